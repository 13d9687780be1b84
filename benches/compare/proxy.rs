//! The physical floor of one extra hop: a minimal pass-through proxy on hyper. It forwards each
//! request to the upstream over pooled keep-alive connections and streams the response back,
//! doing nothing else. Runs as its own process (this bench binary, role `proxy`).

use std::convert::Infallible;

use axum::body::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Upstream = Client<HttpConnector, Incoming>;

/// Serves on a free loopback port in front of `upstream` (`127.0.0.1:port`) and prints `PORT <n>`.
pub async fn serve(upstream: String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("PORT {}", listener.local_addr().unwrap().port());
    let client: Upstream = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(20_000).build_http();
    loop {
        let Ok((socket, _)) = listener.accept().await else { continue };
        let _ = socket.set_nodelay(true);
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| forward(client.clone(), upstream.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

async fn forward(
    client: Upstream,
    upstream: String,
    req: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, hyper::Error>>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("http://{upstream}{path}").parse().unwrap();
    // The upstream speaks HTTP/1.1 whatever the client spoke.
    parts.version = hyper::Version::HTTP_11;
    match client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => Ok(resp.map(BodyExt::boxed)),
        Err(_) => {
            let body =
                http_body_util::Full::new(Bytes::from_static(b"upstream failed")).map_err(|e| match e {}).boxed();
            Ok(Response::builder().status(502).body(body).unwrap())
        }
    }
}
