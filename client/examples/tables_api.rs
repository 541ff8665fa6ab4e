//! `tables_api`: a small HTTP API protected by keyward, with the endpoints of the reference documents.
//!
//! | endpoint | method | scope |
//! |---|---|---|
//! | `/v1/tables` | GET | `read:tables` |
//! | `/v1/tables/{id}/rows` | GET / POST | `read:tables` / `write:tables` |
//! | `/v1/tables/{id}/rows/{row_id}` | PATCH / DELETE | `write:tables` |
//! | `/v1/workflows/{id}/trigger` | POST | `write:workflows` |
//! | `/v1/forms/{id}/submissions` | GET | `read:forms` |
//!
//! Every answer is a small JSON document naming the caller's key id and workspace; refusals are the
//! layer's (401, 403, 429, 503). The README's "For HTTP servers" section runs it next to `keywardd` step
//! by step, with a `curl` for each answer (`.ci/readme-tour.sh` runs that section as written in CI).
//!
//! Options: `--listen ADDR` (port 0 picks a free port; the address is printed as `listening on
//! http://ADDR`), `--socket PATH` (the verify socket; default `KEYWARD_SOCKET`, then keyward's default
//! location), `--allow-query-key` (accept `?api_key=`, not recommended for production) and `--fail-open`
//! (serve requests unverified while keywardd is unreachable: see `OnUnavailable::FailOpen` for the risk).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use clap::Parser;
use keyward_client::http::{KeywardLayer, OnUnavailable, VerifiedKey};
use keyward_client::protocol::paths;
use keyward_client::Client;
use serde_json::{json, Value};

/// A demo HTTP API whose endpoints are protected by keyward.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on; port 0 picks a free port
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// keywardd's verify socket [default: $XDG_RUNTIME_DIR/keyward/verify.sock, else
    /// /tmp/keyward-$UID/verify.sock]
    #[arg(long, value_name = "PATH", env = paths::ENV_SOCKET)]
    socket: Option<PathBuf>,

    /// Also accept the key in the api_key query parameter (not recommended for production)
    #[arg(long)]
    allow_query_key: bool,

    /// Serve requests unverified while keywardd cannot be reached, instead of answering 503
    #[arg(long)]
    fail_open: bool,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let socket = args.socket.unwrap_or_else(paths::default_verify_socket);
    // Not `connect`: the API starts even while keywardd is down, and answers 503 until it is up.
    let client = Client::builder(socket).request_timeout(Duration::from_secs(2)).build();
    let on_unavailable = if args.fail_open { OnUnavailable::FailOpen } else { OnUnavailable::FailClosed };
    let auth = KeywardLayer::new(client).allow_query_parameter(args.allow_query_key).on_unavailable(on_unavailable);

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);
    axum::serve(listener, app(auth)).await
}

/// The API: one layer per family of routes, each with the family's scope rule.
fn app(auth: KeywardLayer) -> Router {
    let tables = Router::new()
        .route("/v1/tables", get(list_tables))
        .route("/v1/tables/{id}/rows", get(list_rows).post(create_row))
        .route("/v1/tables/{id}/rows/{row_id}", patch(update_row).delete(delete_row))
        .route_layer(auth.clone().resource("tables"));
    let workflows = Router::new()
        .route("/v1/workflows/{id}/trigger", post(trigger_workflow))
        .route_layer(auth.clone().scope("write:workflows"));
    let forms =
        Router::new().route("/v1/forms/{id}/submissions", get(list_submissions)).route_layer(auth.scope("read:forms"));
    tables.merge(workflows).merge(forms)
}

/// The caller, as every answer names it. `Option`, because with `--fail-open` a request may come through
/// unverified; without it, the layer never lets one through without a key.
fn caller(key: &Option<VerifiedKey>) -> Value {
    match key {
        Some(key) => json!({ "key_id": key.id, "workspace": key.workspace }),
        None => json!({ "key_id": null, "workspace": null, "unverified": true }),
    }
}

async fn list_tables(key: Option<VerifiedKey>) -> Json<Value> {
    Json(json!({ "caller": caller(&key), "tables": [{ "id": "t1", "name": "Customers" }] }))
}

async fn list_rows(key: Option<VerifiedKey>, Path(table): Path<String>) -> Json<Value> {
    Json(json!({ "caller": caller(&key), "table": table, "rows": [{ "id": "r1" }] }))
}

async fn create_row(key: Option<VerifiedKey>, Path(table): Path<String>) -> (StatusCode, Json<Value>) {
    (StatusCode::CREATED, Json(json!({ "caller": caller(&key), "table": table, "row": { "id": "r2" } })))
}

async fn update_row(key: Option<VerifiedKey>, Path((table, row)): Path<(String, String)>) -> Json<Value> {
    Json(json!({ "caller": caller(&key), "table": table, "row": { "id": row }, "updated": true }))
}

async fn delete_row(key: Option<VerifiedKey>, Path((table, row)): Path<(String, String)>) -> Json<Value> {
    Json(json!({ "caller": caller(&key), "table": table, "row": { "id": row }, "deleted": true }))
}

async fn trigger_workflow(key: Option<VerifiedKey>, Path(workflow): Path<String>) -> (StatusCode, Json<Value>) {
    (StatusCode::ACCEPTED, Json(json!({ "caller": caller(&key), "workflow": workflow, "triggered": true })))
}

async fn list_submissions(key: Option<VerifiedKey>, Path(form): Path<String>) -> Json<Value> {
    Json(json!({ "caller": caller(&key), "form": form, "submissions": [] }))
}
