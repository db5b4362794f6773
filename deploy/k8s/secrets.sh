#!/usr/bin/env bash
# Creates the Secrets the deploy/k8s trees read, in a namespace, with random values:
#
#   deploy/k8s/secrets.sh NAMESPACE
#
# Their names and keys are those of components/placeholder-secrets/secrets.yaml, the
# catalogue; the values come from `openssl rand`. A Secret that already exists is left as it
# is (said so, and skipped), so running this again, or after a secret manager created some
# of them, never replaces a key in use. Values go to kubectl through files in a private
# temporary directory, never on a command line.
#
# Tokens are stored as the APIs want them, SHA-256 digests in a TOML list; the clear ones
# are printed once, here, and nowhere else:
#   - the CD read token (shadowdiff-verdict-api: `token`, with its digest in `auth-tokens`).
#     Argo's analysis reads it from the Secret; Flagger's webhooks from
#     examples/flagger/verdict-token.env, which this writes (mode 600, ignored by git);
#   - an operator token for the verdict API, read and write, for the person who accepts
#     intended differences (`shadowctl accept`; only its digest is stored);
#   - an operator token for the mirror's profile API, read and write (shadowdiff-mirror-api),
#     and the console's own token for it (`console-token`, which the verdict service reads).
#
# The Kafka and ClickHouse credentials are new ones too (user `shadowdiff`, or
# $KAFKA_USERNAME and $CLICKHOUSE_USER): create that user on your broker and in ClickHouse
# with the password from the Secret, as printed below.
#
# $KUBECTL names the kubectl to run (default: kubectl).
set -euo pipefail

usage() {
    echo "usage: $0 NAMESPACE" >&2
    exit 2
}
[ $# -eq 1 ] && [ -n "$1" ] || usage
namespace=$1
here="$(cd "$(dirname "$0")" && pwd)"
kubectl="${KUBECTL:-kubectl}"
token_file="$here/examples/flagger/verdict-token.env"

for tool in openssl sha256sum "$kubectl"; do
    command -v "$tool" >/dev/null || { echo "$0: $tool is not installed" >&2; exit 1; }
done
if ! "$kubectl" get namespace "$namespace" -o name >/dev/null; then
    echo "$0: no namespace $namespace (kubectl create namespace $namespace)" >&2
    exit 1
fi

umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Whether Secret $1 exists; any other failure of kubectl stops the script.
exists() {
    [ -n "$("$kubectl" get secret "$1" --namespace "$namespace" --ignore-not-found -o name)" ]
}

skip() {
    echo "$1: exists, left as it is"
}

# put SECRET KEY VALUE: one value, without a trailing newline, for `create`.
put() {
    mkdir -p "$work/$1"
    printf %s "$3" >"$work/$1/$2"
}

# create SECRET: a Secret of every value put for it.
create() {
    local name=$1 key args=()
    for key in "$work/$name"/*; do
        args+=("--from-file=$(basename "$key")=$key")
    done
    "$kubectl" create secret generic "$name" --namespace "$namespace" "${args[@]}" >/dev/null
    echo "$name: created"
}

hex() { openssl rand -hex 32; }
base64_key() { openssl rand -base64 32; }
digest() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
read_back() { echo "kubectl get secret $1 --namespace $namespace -o jsonpath='{.data.$2}' | base64 -d"; }

# The taps' and the mirror's redaction keys: HMAC for digests, 32 bytes to seal headers.
name=shadowdiff-tap-keys
if exists "$name"; then
    skip "$name"
else
    put "$name" hmac-key "$(base64_key)"
    put "$name" seal-key "$(base64_key)"
    create "$name"
fi

name=shadowdiff-kafka
if exists "$name"; then
    skip "$name"
else
    put "$name" username "${KAFKA_USERNAME:-shadowdiff}"
    put "$name" password "$(hex)"
    create "$name"
    echo "  give the brokers a SASL/PLAIN user ${KAFKA_USERNAME:-shadowdiff} with the password from: $(read_back "$name" password)"
fi

name=shadowdiff-clickhouse
if exists "$name"; then
    skip "$name"
else
    put "$name" user "${CLICKHOUSE_USER:-shadowdiff}"
    put "$name" password "$(hex)"
    create "$name"
    echo "  create the ClickHouse user ${CLICKHOUSE_USER:-shadowdiff} with the password from: $(read_back "$name" password)"
    echo "  and grant it, in the shadowdiff database: CREATE TABLE, ALTER, SELECT and INSERT (the"
    echo "  correlator and the verdict API run the migrations; the correlator writes comparisons, the"
    echo "  verdict API reads them and writes its verdicts, releases and acceptances tables)"
fi

name=shadowdiff-verdict-api
if exists "$name"; then
    skip "$name"
    if [ ! -f "$token_file" ]; then
        echo "  ${token_file#"$here"/} is not written: for the Flagger example, write token=<the Secret's token> there (mode 600), from: $(read_back "$name" token)"
    fi
else
    token="$(hex)"
    acceptor="$(hex)"
    put "$name" token "$token"
    put "$name" auth-tokens "[{name = \"cd\", sha256 = \"$(digest "$token")\", scopes = [\"read\"]}, \
{name = \"operator\", sha256 = \"$(digest "$acceptor")\", scopes = [\"read\", \"write\"]}]"
    create "$name"
    printf 'token=%s\n' "$token" >"$token_file.new"
    chmod 600 "$token_file.new"
    mv "$token_file.new" "$token_file"
    echo "  the CD read token, shown only now (shadowctl's SHADOWCTL_TOKEN; Argo's analysis reads"
    echo "  the Secret, Flagger's webhooks ${token_file#"$here"/}, written now):"
    echo "    $token"
    echo "  the verdict API's operator token (read and write: shadowctl accept), shown only now:"
    echo "    $acceptor"
fi

name=shadowdiff-mirror-api
if exists "$name"; then
    skip "$name"
else
    operator="$(hex)"
    console="$(hex)"
    put "$name" auth-tokens "[{name = \"operator\", sha256 = \"$(digest "$operator")\", scopes = [\"read\", \"write\"]}, \
{name = \"console\", sha256 = \"$(digest "$console")\", scopes = [\"read\", \"write\"]}]"
    put "$name" console-token "$console"
    create "$name"
    echo "  the operator token of the mirror's profile API (read and write), shown only now"
    echo "  (shadowctl's SHADOWCTL_MIRROR_TOKEN):"
    echo "    $operator"
fi
