//! The console's pages in headless Chromium, driven through WebDriver as a person would use
//! them: a verdict service on crafted rows in the real ClickHouse, reached through the SSO
//! proxy a browser comes through.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fantoccini::Locator;
use shadowdiff_store::{DifferenceRow, ExchangeRow};
use shadowdiff_tests::browser::Browser;
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::verdict::{FROM_START, VerdictService, difference, row, sample};
use shadowdiff_tests::{eventually, unique};

const REGRESSED: &str = "v2-regressed";
const CLEAN: &str = "v2-clean";

/// Comparison `i` of `deployment`, made `i` seconds after ten minutes ago: the charts cover
/// the last quarter of an hour.
fn recent(deployment: &str, i: u32) -> ExchangeRow {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    ExchangeRow { ts: u32::try_from(now).unwrap() - 600 + i, ..row(deployment, i) }
}

/// 500 clean comparisons of one candidate; 100 of another, 30 with `items[0].price` changed
/// (the first of them sampled), so it fails on divergence and on a systematic path.
fn evidence() -> (Vec<ExchangeRow>, Vec<DifferenceRow>, Vec<shadowdiff_store::SampleRow>) {
    let mut rows: Vec<ExchangeRow> = (0..500).map(|i| recent(CLEAN, i)).collect();
    let mut differences = Vec::new();
    let mut samples = Vec::new();
    for i in 0..100 {
        let diverged = i % 10 < 3;
        let candidate = ExchangeRow {
            request_id: format!("{REGRESSED}-{i}"),
            differences: u32::from(diverged),
            body_differs: u8::from(diverged),
            ..recent(REGRESSED, i)
        };
        if diverged {
            differences.push(difference(&candidate, "changed_value", "items[0].price", ("100", "130"), false));
        }
        if i == 0 {
            samples.push(sample(&candidate, "primary", "primary", 200, r#"{"items":[{"price":100}]}"#));
            samples.push(sample(&candidate, "candidate", REGRESSED, 200, r#"{"items":[{"price":130}]}"#));
        }
        rows.push(candidate);
    }
    (rows, differences, samples)
}

/// The text of the element `css` finds on the current page, waiting for it a while: a form
/// submitted may still be loading its answer.
async fn text(browser: &Browser, css: &str) -> String {
    let found = browser.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await;
    found.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
}

async fn screenshot(browser: &Browser, name: &str) {
    let png = browser.client.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_finds_the_failing_candidate_its_reasons_and_a_request_in_detail() {
    let infra = Infra::get().await;
    // The default window, an hour: the rows are of the last ten minutes. Each candidate is
    // judged in the background every second.
    let service = VerdictService::start(&infra, "gauge_interval_secs = 1").await;
    let (rows, differences, samples) = evidence();
    service.insert(&rows, &differences, &samples).await;
    // A CD system asked about the regressed candidate once: the overview shows that verdict.
    let asked = reqwest::Client::new()
        .get(format!("{}/v1/verdict?candidate={REGRESSED}&stage=10", service.url))
        .bearer_auth(shadowdiff_tests::auth::READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 200);
    eventually("the verdict recorded", Duration::from_secs(10), || async {
        let n: u64 = service
            .clickhouse
            .query("SELECT count() FROM verdicts WHERE candidate = ?")
            .bind(REGRESSED)
            .fetch_one()
            .await
            .map_err(|e| e.to_string())?;
        if n > 0 { Ok(()) } else { Err("not yet".to_owned()) }
    })
    .await;

    let anonymous = reqwest::get(format!("{}/", service.url)).await.unwrap();
    assert_eq!(anonymous.status(), 401, "the console needs the read scope");
    let proxy = shadowdiff_tests::auth::sso_proxy(service.url.clone(), "ann").await;
    let base = format!("http://{proxy}");
    let browser = Browser::start().await;
    let client = &browser.client;

    // The overview: both candidates, the regressed one with the verdict a CD system was given.
    client.goto(&format!("{base}/")).await.unwrap();
    let candidates = text(&browser, "#candidates").await;
    assert!(candidates.contains(CLEAN) && candidates.contains(REGRESSED), "{candidates}");
    let row = format!("#candidates tr:has(a[href='/candidates/{REGRESSED}'])");
    let now = eventually("the regressed candidate judged now", Duration::from_secs(20), || async {
        client.refresh().await.map_err(|e| e.to_string())?;
        let now = text(&browser, &format!("{row} td.now")).await;
        if now.starts_with("fail") { Ok(text(&browser, &row).await) } else { Err(now) }
    })
    .await;
    assert!(now.contains("diverged"), "why, at its current stage (10, as last asked): {now}");
    assert_eq!(text(&browser, &format!("{row} td.given")).await.lines().next(), Some("fail at 10"));
    let sparklines = client.find_all(Locator::Css("#candidates td.spark svg polyline")).await.unwrap();
    assert_eq!(sparklines.len(), 6, "divergence, new errors and latency for each candidate");
    screenshot(&browser, "console-overview").await;

    // Its page, by its link: the verdict, the failing criteria, the systematic path.
    browser.follow(Locator::LinkText(REGRESSED)).await;
    assert!(text(&browser, "#verdict").await.ends_with("fail"), "{}", text(&browser, "#verdict").await);
    let divergence = text(&browser, "#criteria tr:nth-child(4)").await;
    assert!(divergence.starts_with("divergence_rate fail"), "{divergence}");
    let systematic = text(&browser, "#systematic").await;
    assert!(systematic.contains("/items/{id}") && systematic.contains("items[*].price"), "{systematic}");
    let history = text(&browser, "#history").await;
    assert!(history.contains("fail") && history.contains("api"), "the verdict the CD system was given: {history}");
    for chart in ["#divergence-chart", "#errors-chart", "#latency-chart"] {
        let lines = client.find_all(Locator::Css(&format!("{chart} svg polyline"))).await.unwrap();
        assert!(!lines.is_empty(), "{chart} draws its lines");
    }
    let band = client.find_all(Locator::Css("#divergence-chart svg polygon")).await.unwrap();
    assert_eq!(band.len(), 1, "the divergence's interval band");
    // A shorter window, by its link: the URL says so and the charts follow.
    browser.follow(Locator::LinkText("15 min")).await;
    let url = client.current_url().await.unwrap();
    assert_eq!(url.query(), Some("stage=shadow&since=15m"), "{url}");
    assert!(text(&browser, "#ranges a.current").await == "15 min");
    screenshot(&browser, "console-candidate").await;
    client.execute("document.getElementById('charts').scrollIntoView()", vec![]).await.unwrap();
    screenshot(&browser, "console-charts").await;
    browser.back().await;
    let candidate_url = client.current_url().await.unwrap();

    // An example request opens the drill-down page; back returns to the candidate.
    let example = format!("{REGRESSED}-0");
    browser.follow(Locator::LinkText(&example)).await;
    assert!(text(&browser, "h1").await.contains(&example));
    browser.back().await;
    assert_eq!(client.current_url().await.unwrap(), candidate_url, "back to the candidate's page");

    // The systematic path opens the comparisons filtered to it: the 30 that changed it.
    browser.follow(Locator::Css("#systematic a code")).await;
    let filtered = client.find_all(Locator::Css("#comparisons tr td:nth-child(2) a")).await.unwrap();
    assert_eq!(filtered.len(), 30, "{}", text(&browser, "body").await);
    assert_eq!(
        client.find(Locator::Css("input[name=path]")).await.unwrap().prop("value").await.unwrap().as_deref(),
        Some("items[*].price"),
        "the form shows the filter"
    );
    screenshot(&browser, "console-comparisons").await;
    // Filtering by the form: not noise, on a route with none of them.
    let route = client.find(Locator::Css("input[name=route]")).await.unwrap();
    route.clear().await.unwrap();
    route.send_keys("/orders/{id}").await.unwrap();
    browser.follow(Locator::Css("#filters button")).await;
    assert!(text(&browser, "#none").await.contains("No comparison matches"), "{}", text(&browser, "body").await);
    browser.back().await;
    browser.back().await;
    assert_eq!(client.current_url().await.unwrap(), candidate_url, "back through the filters to the candidate");

    // Another stage's gate is a link: a URL to bookmark and share.
    browser.follow(Locator::LinkText("50")).await;
    let url = client.current_url().await.unwrap();
    assert_eq!(url.query(), Some("stage=50"), "{url}");
    assert!(text(&browser, "#verdict").await.starts_with("Verdict at stage 50"));

    // The clean candidate passes; viewing pages recorded no verdict for it.
    client.goto(&format!("{base}/candidates/{CLEAN}?stage=10")).await.unwrap();
    assert!(text(&browser, "#verdict").await.ends_with("pass"), "{}", text(&browser, "#verdict").await);
    let recorded: u64 = service
        .clickhouse
        .query("SELECT count() FROM verdicts WHERE candidate = ?")
        .bind(CLEAN)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(recorded, 0, "a page is not a verdict given");

    // 500 comparisons page by 50, newest first, with no row on two pages.
    client.goto(&format!("{base}/comparisons?candidate={CLEAN}")).await.unwrap();
    let ids = |browser: &Browser| {
        let client = browser.client.clone();
        async move {
            let mut ids = Vec::new();
            for link in client.find_all(Locator::Css("#comparisons tr td:nth-child(2) a")).await.unwrap() {
                ids.push(link.text().await.unwrap());
            }
            ids
        }
    };
    let first = ids(&browser).await;
    browser.follow(Locator::Id("older")).await;
    let second = ids(&browser).await;
    assert_eq!((first.len(), second.len()), (50, 50));
    assert!(first.iter().all(|id| !second.contains(id)), "pages overlap");
    assert_eq!((first[0].as_str(), second[0].as_str()), ("req-499", "req-449"), "newest first");
    client.goto(&format!("{base}/comparisons?candidate={CLEAN}&noise=maybe")).await.unwrap();
    assert!(text(&browser, "#error").await.contains("noise must be yes, no or empty"));

    // The price change is intended after all: accepted from the systematic path's row, with
    // a reason, it counts nowhere and is listed with who accepted it.
    client.goto(&format!("{base}/candidates/{REGRESSED}?stage=10")).await.unwrap();
    let reason = client.find(Locator::Css("#systematic form.accept input[name=reason]")).await.unwrap();
    reason.send_keys("prices rise on purpose in v2").await.unwrap();
    browser.follow(Locator::Css("#systematic form.accept button")).await;
    let accepted = text(&browser, "#accepted").await;
    assert!(accepted.contains("items[*].price") && accepted.contains("sso:ann"), "{accepted}");
    assert!(accepted.contains("prices rise on purpose in v2"), "{accepted}");
    assert!(client.find(Locator::Id("systematic")).await.is_err(), "no systematic path left");

    // A name that is no candidate's is a page saying so, escaped.
    client.goto(&format!("{base}/candidates/{}", unique("none"))).await.unwrap();
    assert!(text(&browser, "#verdict").await.ends_with("inconclusive"));
    browser.stop().await;
    service.stop().await;
}

/// The value of the input `name` in the faults form of profile `id`, as the page shows it.
async fn fault(browser: &Browser, id: &str, name: &str) -> String {
    let css = format!("section[id='{id}'] form.faults input[name={name}]");
    browser.client.find(Locator::Css(&css)).await.unwrap().prop("value").await.unwrap().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_sees_a_profiles_targets_and_changes_its_faults_from_the_console() {
    use shadowdiff_tests::mirror::{MirrorTopics, MirrorUnderTest};
    let infra = Infra::get().await;
    let topics = MirrorTopics::new();
    let profile = "[[mirror.profiles]]\nid = \"checkout\"\nstage = \"10\"\n\
                   [[mirror.profiles.targets]]\nname = \"v2\"\nrole = \"candidate\"\nbase_url = \"http://127.0.0.1:9\"\n";
    let mirror = MirrorUnderTest::start(&infra.brokers, &topics, profile).await;
    // The console reaches the mirror server to server, with its own operator token.
    let console = format!(
        "{FROM_START}\n[console]\nmirror_url = \"{}\"\nmirror_token = \"{}\"\n",
        mirror.admin_url,
        shadowdiff_tests::auth::WRITE_TOKEN
    );
    let service = VerdictService::start(&infra, &console).await;
    let proxy = shadowdiff_tests::auth::sso_proxy(service.url.clone(), "ann").await;
    let base = format!("http://{proxy}");
    let browser = Browser::start().await;
    let client = &browser.client;

    client.goto(&format!("{base}/profiles")).await.unwrap();
    let section = text(&browser, "section[id='checkout']").await;
    assert!(section.contains("checkout active") && section.contains("stage 10"), "{section}");
    assert!(text(&browser, "section[id='checkout'] table.targets").await.contains("v2 candidate"));

    // A value out of bounds: the mirror's problem is shown next to its field, nothing changes.
    let percent = client.find(Locator::Css("section[id='checkout'] input[name=error_percent]")).await.unwrap();
    percent.clear().await.unwrap();
    percent.send_keys("150").await.unwrap();
    browser.follow(Locator::Css("section[id='checkout'] form.faults button")).await;
    let problem = text(&browser, "section[id='checkout'] span.problem[data-field=error_percent]").await;
    assert_eq!(problem, "faults.error_percent: between 0 and 100");
    assert_eq!(fault(&browser, "checkout", "error_percent").await, "150", "what was typed, shown again");
    screenshot(&browser, "console-profiles").await;

    // A good one is applied: the page shows it once the mirror has it.
    let percent = client.find(Locator::Css("section[id='checkout'] input[name=error_percent]")).await.unwrap();
    percent.clear().await.unwrap();
    percent.send_keys("2.5").await.unwrap();
    browser.follow(Locator::Css("section[id='checkout'] form.faults button")).await;
    eventually("the fault applied", Duration::from_secs(20), || async {
        client.goto(&format!("{base}/profiles")).await.map_err(|e| e.to_string())?;
        let value = fault(&browser, "checkout", "error_percent").await;
        if value == "2.5" { Ok(()) } else { Err(value) }
    })
    .await;

    // A new profile, from the form: the mirror's problem is shown at its field, with what was
    // typed; corrected, it is saved and listed.
    client.goto(&format!("{base}/profiles")).await.unwrap();
    browser.follow(Locator::Id("new-profile")).await;
    let input = |name: &str| format!("#profile-form [name='{name}']");
    for (name, value) in
        [("id", "search"), ("targets[0].name", "v3 beta"), ("targets[0].base_url", "http://127.0.0.1:9")]
    {
        let field = client.find(Locator::Css(&input(name))).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }
    browser.follow(Locator::Css("#profile-form button[type=submit]")).await;
    let problem = text(&browser, "#profile-form span.problem[data-field='targets[0].name']").await;
    assert!(problem.starts_with("targets[0].name: 1 to"), "{problem}");
    let typed = client.find(Locator::Css(&input("targets[0].name"))).await.unwrap().prop("value").await.unwrap();
    assert_eq!(typed.as_deref(), Some("v3 beta"), "what was typed, shown again");
    screenshot(&browser, "console-profile-form").await;
    let name = client.find(Locator::Css(&input("targets[0].name"))).await.unwrap();
    name.clear().await.unwrap();
    name.send_keys("v3").await.unwrap();
    browser.follow(Locator::Css("#profile-form button[type=submit]")).await;
    eventually("the new profile listed", Duration::from_secs(20), || async {
        client.goto(&format!("{base}/profiles")).await.map_err(|e| e.to_string())?;
        match client.find(Locator::Css("section[id='search']")).await {
            Ok(section) => Ok(section.text().await.map_err(|e| e.to_string())?),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    assert!(text(&browser, "section[id='search'] table.targets").await.contains("v3 candidate"));

    // Its stage, set from the list; its sample, from the edit form, which keeps the rest.
    let stage = client.find(Locator::Css("section[id='search'] form.stage select")).await.unwrap();
    stage.select_by_value("50").await.unwrap();
    browser.follow(Locator::Css("section[id='search'] form.stage button")).await;
    eventually("the stage set", Duration::from_secs(20), || async {
        client.goto(&format!("{base}/profiles")).await.map_err(|e| e.to_string())?;
        let section = text(&browser, "section[id='search']").await;
        if section.contains("stage 50") { Ok(()) } else { Err(section) }
    })
    .await;
    browser.follow(Locator::Css("section[id='search'] a.edit")).await;
    let sample = client.find(Locator::Css(&input("sample_percent"))).await.unwrap();
    sample.clear().await.unwrap();
    sample.send_keys("25").await.unwrap();
    browser.follow(Locator::Css("#profile-form button[type=submit]")).await;
    eventually("the edit applied", Duration::from_secs(20), || async {
        client.goto(&format!("{base}/profiles")).await.map_err(|e| e.to_string())?;
        let section = text(&browser, "section[id='search']").await;
        if section.contains("stage 50, 25% of matching") { Ok(()) } else { Err(section) }
    })
    .await;

    // A change from another site is refused, whoever's browser sends it.
    let forged = reqwest::Client::new()
        .post(format!("{base}/profiles/checkout/delete"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // And a read token cannot change anything.
    let reader = reqwest::Client::new()
        .post(format!("{}/profiles/checkout/delete", service.url))
        .bearer_auth(shadowdiff_tests::auth::READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(reader.status(), 403);

    // Deleted from the page, the profile goes.
    client.goto(&format!("{base}/profiles")).await.unwrap();
    browser.follow(Locator::Css("section[id='checkout'] form.delete button")).await;
    eventually("the profile deleted", Duration::from_secs(20), || async {
        client.goto(&format!("{base}/profiles")).await.map_err(|e| e.to_string())?;
        let body = text(&browser, "body").await;
        if body.contains("checkout") { Err(body) } else { Ok(()) }
    })
    .await;
    browser.stop().await;
    service.stop().await;
    mirror.stop().await;
}

/// Where no SSO proxy stands in front: a browser is sent to the sign-in form, signs in with a
/// token, comes back to the page it asked for, and signs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_with_a_token_and_out_again() {
    let infra = Infra::get().await;
    let service = VerdictService::start(&infra, FROM_START).await;
    let browser = Browser::start().await;
    let client = &browser.client;
    let wanted = format!("{}/candidates/{CLEAN}?stage=10", service.url);

    client.goto(&wanted).await.unwrap();
    let url = client.current_url().await.unwrap();
    assert_eq!(url.path(), "/sign-in", "{url}");
    let token = client.find(Locator::Css("#sign-in input[name=token]")).await.unwrap();
    token.send_keys("not-a-token").await.unwrap();
    browser.follow(Locator::Css("#sign-in button")).await;
    assert_eq!(text(&browser, "#sign-in span.problem[data-field=token]").await, "missing or unknown credentials");
    screenshot(&browser, "console-sign-in").await;

    let token = client.find(Locator::Css("#sign-in input[name=token]")).await.unwrap();
    token.send_keys(shadowdiff_tests::auth::READ_TOKEN).await.unwrap();
    browser.follow(Locator::Css("#sign-in button")).await;
    assert_eq!(client.current_url().await.unwrap().as_str(), wanted, "back to the page asked for");
    assert!(text(&browser, "#verdict").await.starts_with("Verdict at stage 10"));
    // The cookie is out of scripts' reach.
    let seen: serde_json::Value = client.execute("return document.cookie", vec![]).await.unwrap();
    assert_eq!(seen, serde_json::json!(""), "HttpOnly");

    browser.follow(Locator::Css("form.sign-out button")).await;
    assert_eq!(client.current_url().await.unwrap().path(), "/sign-in", "signed out, to the form");
    client.goto(&format!("{}/", service.url)).await.unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), "/sign-in", "signed out");
    browser.stop().await;
    service.stop().await;
}

/// The whole pipeline behind the console: a person signed in watches a candidate that
/// changes a field on every fifth item appear on the overview once traffic flows, and its
/// verdict turn to fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_watches_a_candidates_verdict_appear_as_traffic_flows() {
    use shadowdiff_demo::backend::{self, Behavior};
    use shadowdiff_tests::pipeline::{Backends, CANDIDATE, Pipeline};
    let infra = Infra::get().await;
    let serve = |behavior| shadowdiff_tests::serve(backend::app(behavior));
    let backends = Backends {
        primary: serve(Behavior::default()).await,
        secondary: serve(Behavior::default()).await,
        candidate: serve(Behavior { regress_every: 5, ..Behavior::default() }).await,
    };
    let pipeline = Pipeline::start(&infra, backends).await;
    let browser = Browser::start().await;
    let client = &browser.client;
    client.goto(&format!("{}/", pipeline.verdict_url)).await.unwrap();
    let token = client.find(Locator::Css("#sign-in input[name=token]")).await.unwrap();
    token.send_keys(shadowdiff_tests::auth::READ_TOKEN).await.unwrap();
    browser.follow(Locator::Css("#sign-in button")).await;
    assert!(text(&browser, "#empty").await.contains("No candidate"), "nothing before traffic");

    let http = reqwest::Client::new();
    for i in 0..200 {
        let answer = http.get(format!("{}/items/{i}", pipeline.tap_url)).send().await.unwrap();
        assert_eq!(answer.status(), 200);
    }
    eventually("the candidate on the overview", Duration::from_secs(60), || async {
        client.refresh().await.map_err(|e| e.to_string())?;
        match client.find(Locator::Css("#candidates")).await {
            Ok(table) => {
                let listed = table.text().await.map_err(|e| e.to_string())?;
                if listed.contains(CANDIDATE) { Ok(()) } else { Err(listed) }
            }
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    browser.follow(Locator::LinkText(CANDIDATE)).await;
    eventually("its verdict to fail", Duration::from_secs(60), || async {
        client.refresh().await.map_err(|e| e.to_string())?;
        let verdict = text(&browser, "#verdict").await;
        if verdict.ends_with("fail") { Ok(()) } else { Err(verdict) }
    })
    .await;
    let systematic = text(&browser, "#systematic").await;
    assert!(systematic.contains("/items/{id}"), "{systematic}");
    browser.stop().await;
    pipeline.stop().await;
}
