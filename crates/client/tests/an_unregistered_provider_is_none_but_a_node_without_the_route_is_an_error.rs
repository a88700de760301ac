//! `NodeClient::provider` answers `None` only when the node says no provider is registered
//! there; a node without `GET /v1/providers/{address}` (an older one) answers "no route", which
//! must stay an error: an agent that took it for "not registered" would register again.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use gpunet_api::ErrorBody;
use gpunet_client::NodeClient;
use gpunet_protocol::Address;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn not_found(body: ErrorBody) -> (StatusCode, axum::Json<ErrorBody>) {
    (StatusCode::NOT_FOUND, axum::Json(body))
}

#[tokio::test]
async fn an_unregistered_provider_is_none_but_a_missing_route_is_an_error() {
    let who = Address([3; 32]);
    let new_node = serve(Router::new().route(
        "/v1/providers/{address}",
        get(|| async {
            not_found(ErrorBody::new(
                "not_found",
                "no provider is registered at …",
            ))
        }),
    ))
    .await;
    let got = NodeClient::new(&new_node).provider(&who).await;
    assert!(matches!(got, Ok(None)), "{got:?}");

    let old_node = serve(Router::new().fallback(|uri: axum::http::Uri| async move {
        not_found(ErrorBody::no_route(uri.path()))
    }))
    .await;
    let got = NodeClient::new(&old_node).provider(&who).await;
    assert!(
        got.is_err(),
        "a missing route is not a missing provider: {got:?}"
    );
}
