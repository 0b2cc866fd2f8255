//! `GET /v1/events?since=N&wait=30s`: this server's events after id `N` (all it keeps without
//! `since`), at once, or with `wait` as soon as one comes (up to the wait). The last id comes in
//! the answer and in `X-Tandem-Index`, to send as the next `since`.

use axum::extract::State;
use axum::http::{HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::agents_api::{wait_of, INDEX_HEADER};
use crate::error::ApiError;
use crate::events::{Event, Events};
use crate::extract::query_params;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    since: Option<u64>,
    wait: Option<String>,
}

#[derive(Serialize)]
struct EventList {
    events: Vec<Event>,
    last_id: u64,
}

pub async fn list(State(events): State<Events>, uri: Uri) -> Result<Response, ApiError> {
    let query: EventsQuery = query_params(&uri)?;
    let since = query.since.unwrap_or(0);
    let (events, last_id) = match query.wait.as_deref() {
        Some(wait) => events.wait_after(since, wait_of(Some(wait))?).await,
        None => events.after(since),
    };
    let mut response = axum::Json(EventList { events, last_id }).into_response();
    response
        .headers_mut()
        .insert(INDEX_HEADER, HeaderValue::from(last_id));
    Ok(response)
}
