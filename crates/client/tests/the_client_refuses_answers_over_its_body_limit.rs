//! The client reads at most `MAX_RESPONSE_BODY_BYTES` of a JSON answer, whether or not the
//! server says the length up front, and names the limit and the URL when it refuses.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use gpunet_client::{ClientError, MAX_RESPONSE_BODY_BYTES, NodeClient};

/// A `StatusView`-shaped JSON body padded to `len` bytes with spaces (still valid JSON).
fn status_json(len: usize) -> Vec<u8> {
    let json = br#"{"chain_id":"c","height":1,"time_ms":0,"state_root":"0000000000000000000000000000000000000000000000000000000000000000","block_ms":1,"orderer":"solo","mempool_size":0,"version":"0"}"#;
    let mut body = json.to_vec();
    body.resize(len.max(json.len()), b' ');
    body
}

/// Serves `GET /v1/status` with a body of `len` bytes, either with a `content-length`
/// (`sized`) or streamed in 64 KiB chunks without one.
async fn server(len: usize, sized: bool) -> String {
    let app = Router::new().route(
        "/v1/status",
        get(move || async move {
            let body = status_json(len);
            if sized {
                return Body::from(body);
            }
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
            Body::from_stream(futures::stream::iter(chunks))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_answer_at_the_limit_is_read_and_one_byte_more_is_refused() {
    for sized in [true, false] {
        let base = server(MAX_RESPONSE_BODY_BYTES, sized).await;
        let status = NodeClient::new(&base).status().await;
        assert!(status.is_ok(), "sized {sized}: {status:?}");

        let base = server(MAX_RESPONSE_BODY_BYTES + 1, sized).await;
        let err = NodeClient::new(&base)
            .status()
            .await
            .expect_err("one byte over the limit");
        let ClientError::TooLarge { url, limit_bytes } = &err else {
            panic!("sized {sized}: expected TooLarge, got {err}");
        };
        assert_eq!(*limit_bytes, MAX_RESPONSE_BODY_BYTES);
        assert_eq!(url, &format!("{base}/v1/status"));
        let message = err.to_string();
        assert!(
            message.contains(&MAX_RESPONSE_BODY_BYTES.to_string()) && message.contains(&base),
            "the message names the limit and the URL: {message}"
        );
    }
}
