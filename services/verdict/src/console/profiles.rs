//! The profile pages: the mirror's profiles with each target's live state, and the changes a
//! person makes there, through the mirror's admin API (`mirror`).
//!
//! - `GET /profiles`: every profile, active or expired, with its targets' live counters.
//! - `GET /profiles/new`, `GET /profiles/{id}/edit`: the profile form (`profile_form`).
//! - `POST /profiles`: creates or replaces a profile from the form.
//! - `POST /profiles/{id}/stage`, `/faults`, `/delete`: sets its stage, its faults, or
//!   removes it.
//!
//! Changes need the `write` scope and come only from the console's own pages (`same_site`).
//! A refused change shows the mirror's problems at their fields, with what was typed.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::mirror::{FaultsForm, MirrorError, refused_status};
use super::profile_form::ProfileForm;
use super::render;
use crate::api::AppState;

/// A change the mirror refused, shown on the profiles page at the profile it was about.
pub(super) struct Refusal<'a> {
    pub(super) id: &'a str,
    pub(super) problems: Vec<String>,
    /// The faults as typed, shown again instead of the profile's.
    pub(super) faults: Option<&'a FaultsForm>,
}

pub(crate) async fn profiles(State(state): State<AppState>) -> Response {
    profiles_page(&state, None).await
}

/// The profiles page, with a refused change shown at its profile.
async fn profiles_page(state: &AppState, refused: Option<(Refusal<'_>, StatusCode)>) -> Response {
    let Some(mirror) = state.mirror() else {
        return Html(render::profiles(&Err(MirrorError::Unconfigured), None)).into_response();
    };
    let listed = mirror.profiles().await;
    let status = refused.as_ref().map_or(StatusCode::OK, |(_, status)| *status);
    (status, Html(render::profiles(&listed, refused.as_ref().map(|(r, _)| r)))).into_response()
}

/// Each problem the mirror (or the form) has with a change.
fn problems(error: &MirrorError) -> Vec<String> {
    match error {
        MirrorError::Refused(problems) => problems.clone(),
        other => vec![other.to_string()],
    }
}

/// Back to the profile on its page once changed, or the page with the refusal.
async fn changed(
    state: &AppState,
    id: &str,
    outcome: Result<(), MirrorError>,
    faults: Option<&FaultsForm>,
) -> Response {
    match outcome {
        Ok(()) => Redirect::to(&format!("/profiles#{}", render::segment(id))).into_response(),
        Err(error) => {
            let refusal = Refusal { id, problems: problems(&error), faults };
            profiles_page(state, Some((refusal, refused_status(&error)))).await
        }
    }
}

pub(crate) async fn change_faults(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<FaultsForm>,
) -> Response {
    let Some(mirror) = state.mirror() else { return profiles_page(&state, None).await };
    let outcome = match form.parse() {
        Ok(faults) => mirror.faults(&id, &faults).await,
        Err(problems) => Err(MirrorError::Refused(problems)),
    };
    changed(&state, &id, outcome, Some(&form)).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct StageForm {
    stage: String,
}

/// Sets the profile's stage: the profile as the mirror has it, with the new stage.
pub(crate) async fn set_stage(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<StageForm>,
) -> Response {
    let Some(mirror) = state.mirror() else { return profiles_page(&state, None).await };
    let outcome = async {
        let mut profile = mirror.profile(&id).await?;
        if let Some(fields) = profile.as_object_mut() {
            super::mirror::without_derived(fields);
        }
        profile["stage"] = serde_json::Value::String(form.stage);
        mirror.put(&profile).await
    };
    changed(&state, &id, outcome.await, None).await
}

pub(crate) async fn delete_profile(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(mirror) = state.mirror() else { return profiles_page(&state, None).await };
    match mirror.delete(&id).await {
        Ok(()) => Redirect::to("/profiles").into_response(),
        Err(error) => changed(&state, &id, Err(error), None).await,
    }
}

pub(crate) async fn new_profile() -> Html<String> {
    Html(ProfileForm::blank().render(&[]))
}

pub(crate) async fn edit_profile(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(mirror) = state.mirror() else { return profiles_page(&state, None).await };
    match mirror.profile(&id).await {
        Ok(profile) => Html(ProfileForm::of(&profile).render(&[])).into_response(),
        Err(error) => {
            let status = refused_status(&error);
            (status, Html(render::error(status, &problems(&error).join("; ")))).into_response()
        }
    }
}

/// Creates or replaces a profile from its form; a refused one is the form again, with the
/// mirror's problems at their fields and what was typed.
pub(crate) async fn save_profile(State(state): State<AppState>, Form(fields): Form<Vec<(String, String)>>) -> Response {
    let Some(mirror) = state.mirror() else { return profiles_page(&state, None).await };
    let form = match ProfileForm::posted(fields) {
        Ok(form) => form,
        Err(problem) => {
            let status = StatusCode::BAD_REQUEST;
            return (status, Html(render::error(status, &problem))).into_response();
        }
    };
    let outcome = async {
        let base = match form.editing() {
            "" => None,
            id => Some(mirror.profile(id).await?),
        };
        let profile = form.profile(base.as_ref()).map_err(MirrorError::Refused)?;
        mirror.put(&profile).await?;
        Ok::<_, MirrorError>(profile["id"].as_str().unwrap_or_default().to_owned())
    };
    match outcome.await {
        Ok(id) => Redirect::to(&format!("/profiles#{}", render::segment(&id))).into_response(),
        Err(error) => (refused_status(&error), Html(form.render(&problems(&error)))).into_response(),
    }
}
