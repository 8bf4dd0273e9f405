//! The router. Every API route is registered through `Routes`, which records it: only with
//! `utoipa_axum::routes!`, so that it cannot exist without its entry in the OpenAPI document,
//! and the recorded list is what the tests walk (the auth matrix, the document's completeness).
//! The dashboard's routes are merged in from `crate::dashboard::router`, recorded apart.

pub mod events;
pub mod inbox;
pub mod incidents;
pub mod ops;
pub mod runs;
pub mod tasks;
pub mod tickets;
pub mod tokens;
pub mod types;

use crate::error::{ApiError, ErrorBody};
use crate::{Web, guard};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::from_fn_with_state;
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa::openapi::path::PathItem;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

/// The largest request body: a ticket's 2 MiB body, in JSON, with room for escapes.
const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Mission Control",
        description = "The JSON API of a Mission Control instance. Errors are `{\"error\": {\"code\", \"message\", \"field\"?}}`. With `[server] auth = true`, every route but `/healthz` needs `Authorization: Bearer mc_…`: GET needs the read scope, other methods write, `/api/v1/tokens` admin."
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token, `mc_…` (`mission token create`)"))
                    .build(),
            ),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// One route of the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: Method,
    /// As registered: `/api/v1/tickets/{id}`.
    pub path: String,
    /// Whether the OpenAPI document describes it.
    pub documented: bool,
}

/// The built server: the router, its OpenAPI document, every API route it has, and the
/// dashboard's routes (pages, forms, its two static files: not in the document).
pub struct Server {
    pub router: axum::Router,
    pub openapi: utoipa::openapi::OpenApi,
    pub routes: Vec<RouteInfo>,
    pub pages: Vec<RouteInfo>,
}

/// Collects routes: bounded ones (limited in number and time) and streams.
struct Routes {
    bounded: OpenApiRouter<Web>,
    streams: OpenApiRouter<Web>,
    list: Vec<RouteInfo>,
}

impl Routes {
    fn new() -> Self {
        Routes {
            bounded: OpenApiRouter::new(),
            streams: OpenApiRouter::new(),
            list: Vec::new(),
        }
    }

    fn record(&mut self, route: &UtoipaMethodRouter<Web>) {
        for (path, item) in &route.1.paths {
            for method in methods(item) {
                self.list.push(RouteInfo {
                    method,
                    path: path.clone(),
                    documented: true,
                });
            }
        }
    }

    /// A documented route, bounded in number and time.
    fn api(mut self, route: UtoipaMethodRouter<Web>) -> Self {
        self.record(&route);
        self.bounded = self.bounded.routes(route);
        self
    }

    /// A documented long-lived stream: not under the request timeout; streams have their own
    /// bound.
    fn stream(mut self, route: UtoipaMethodRouter<Web>) -> Self {
        self.record(&route);
        self.streams = self.streams.routes(route);
        self
    }
}

fn methods(item: &PathItem) -> Vec<Method> {
    [
        (Method::GET, item.get.is_some()),
        (Method::POST, item.post.is_some()),
        (Method::PUT, item.put.is_some()),
        (Method::PATCH, item.patch.is_some()),
        (Method::DELETE, item.delete.is_some()),
        (Method::HEAD, item.head.is_some()),
        (Method::OPTIONS, item.options.is_some()),
        (Method::TRACE, item.trace.is_some()),
    ]
    .into_iter()
    .filter_map(|(method, present)| present.then_some(method))
    .collect()
}

/// Documents on every operation what the guards in front of every route may answer, in the
/// error shape: 401 (no valid token, where one is needed), 403 (a scope too small, a foreign
/// Host or Origin), 503 (too many requests at once, or one too slow); and 422 where there are
/// parameters (each parsed by its handler, a bad one refused in the error shape).
fn document_guards(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            // `security(())`: open to anyone (liveness).
            let open = operation.security.as_ref().is_some_and(|requirements| {
                requirements.iter().all(|r| {
                    serde_json::to_value(r)
                        .is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
                })
            });
            let parameters = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let body = operation.request_body.is_some();
            let responses = &mut operation.responses.responses;
            // A body is read up to `MAX_BODY_BYTES`.
            if body {
                responses
                    .entry("413".to_owned())
                    .or_insert_with(|| error("a body over the size limit"));
            }
            // Every path and query parameter is parsed by its handler, a bad one refused so.
            if parameters {
                responses
                    .entry("422".to_owned())
                    .or_insert_with(|| error("a parameter that does not parse"));
            }
            if !open {
                responses.entry("401".to_owned()).or_insert_with(|| {
                    error("no valid API token (missing, unknown, expired or revoked)")
                });
            }
            responses.entry("403".to_owned()).or_insert_with(|| {
                error("the token's scope does not allow this, or a foreign Host or Origin")
            });
            responses.entry("503".to_owned()).or_insert_with(|| {
                error("too many requests at once, or the request took too long")
            });
        }
    }
}

/// Builds the router over `web`.
pub fn build(web: Web) -> Server {
    let routes = Routes::new()
        .api(routes!(tickets::list, tickets::create))
        .api(routes!(tickets::show, tickets::edit))
        .api(routes!(tickets::move_ticket))
        .api(routes!(tickets::answer))
        .api(routes!(tickets::done))
        .api(routes!(tickets::review))
        .api(routes!(tickets::explain))
        .api(routes!(runs::log))
        .stream(routes!(runs::log_stream))
        .api(routes!(inbox::list))
        .api(routes!(inbox::show))
        .api(routes!(inbox::act))
        .api(routes!(incidents::list))
        .api(routes!(incidents::show))
        .api(routes!(incidents::resolve))
        .api(routes!(events::list))
        .stream(routes!(events::stream))
        .api(routes!(tasks::list))
        .api(routes!(tasks::history))
        .api(routes!(tasks::run_now))
        .api(routes!(ops::status))
        .api(routes!(tokens::list, tokens::create))
        .api(routes!(tokens::revoke))
        .api(routes!(ops::openapi))
        .api(routes!(ops::healthz))
        .api(routes!(ops::metrics));
    let Routes {
        bounded,
        streams,
        list,
    } = routes;
    let bounded = bounded.route_layer(from_fn_with_state(web.clone(), guard::limit));
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(bounded)
        .merge(streams)
        .split_for_parts();
    document_guards(&mut openapi);
    let document = ops::Document(std::sync::Arc::new(
        openapi.to_json().unwrap_or_else(|_| "{}".to_owned()),
    ));
    let (pages, page_list) = crate::dashboard::router();
    let pages = pages.route_layer(from_fn_with_state(web.clone(), guard::limit));
    let router = router
        .merge(pages)
        .layer(axum::Extension(document))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(from_fn_with_state(web.clone(), guard::authenticate))
        .layer(axum::middleware::from_fn(guard::origin))
        .layer(from_fn_with_state(web.clone(), guard::host))
        .layer(from_fn_with_state(web.clone(), guard::observe))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(web.clone());
    Server {
        router,
        openapi,
        routes: list,
        pages: page_list,
    }
}

/// A query string, its problems answered in the API's error shape (422).
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::invalid(e.body_text()))
    }
}

/// A JSON body (`Content-Type: application/json`), its problems answered in the API's error
/// shape: 415 for another content type, 413 for a body over the limit, 422 for JSON that does
/// not fit.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        check_json(request.headers())?;
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(body_rejected)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A body that could not be read, in the API's error shape: 413 over `MAX_BODY_BYTES`, 422
/// otherwise.
pub(crate) fn body_rejected(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is over the limit of {MAX_BODY_BYTES} bytes"),
        )
    } else {
        ApiError::invalid(rejection.body_text())
    }
}

pub(crate) fn check_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON: Content-Type: application/json",
        ))
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}
