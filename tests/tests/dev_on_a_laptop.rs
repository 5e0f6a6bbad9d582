//! `cutx dev` is safe to run on a laptop with a browser open: a page on another origin (or a
//! sandboxed one, whose origin is `null`) cannot read the API's answers with the session
//! cookie, no page at all can read the dev mailbox (which holds every sign-in link), and a
//! request naming a host the server was not given (DNS rebinding: `evil.example` pointed at
//! 127.0.0.1) is refused on every transport.

use cutx_tests::{Client, Server, Transport};
use reqwest::Method;

/// `Access-Control-Allow-Origin` of an answer to `method path` from `origin` (a preflight when
/// `method` is OPTIONS), with the session cookie.
async fn allowed_origin(server: &Server, method: Method, path: &str, origin: &str, cookie: &str) -> Option<String> {
    let mut request = cutx_tests::http()
        .request(method.clone(), format!("{}{path}", server.base))
        .header("origin", origin)
        .header("cookie", format!("cutx_token={cookie}"));
    if method == Method::OPTIONS {
        request = request
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "content-type,x-grpc-web");
    }
    let answer = request.send().await.unwrap();
    answer.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_loopback_origins_may_read_the_api_and_no_origin_may_read_the_dev_mailbox() {
    let server = Server::spawn_with(&[("CUTX_CORS_ORIGINS", "https://studio.example.com")]).await;
    let mut client = Client::new(&server, Transport::Rest);
    client.sign_in("laptop@example.com").await;
    let cookie = client.token().unwrap().to_string();

    for method in [Method::GET, Method::OPTIONS] {
        for (origin, want) in [
            ("http://localhost:5173", true),
            ("http://127.0.0.1:3000", true),
            ("https://studio.example.com", true),
            ("https://evil.example", false),
            ("null", false),
            ("http://localhost.evil.example", false),
        ] {
            let got = allowed_origin(&server, method.clone(), "/api/auth/me", origin, &cookie).await;
            assert_eq!(got.as_deref(), want.then_some(origin), "{method} /api/auth/me from {origin}");
        }
        // The mailbox answers no origin at all, over REST and over gRPC-web.
        for path in ["/api/dev/mailbox", "/cutx.v1.DevMailboxService/ListDevMail"] {
            for origin in ["http://localhost:5173", "https://studio.example.com", "https://evil.example", "null"] {
                let got = allowed_origin(&server, method.clone(), path, origin, &cookie).await;
                assert_eq!(got, None, "{method} {path} from {origin}");
            }
        }
    }
    // The mailbox still serves a client that is not a browser page.
    assert!(!client.mailbox().await.unwrap().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_a_host_name_the_server_was_not_given_is_refused_on_every_transport() {
    let server = Server::spawn_with(&[("CUTX_ALLOWED_HOSTS", "dev.box.lan")]).await;
    let port = server.addr.port();
    let http = cutx_tests::http();
    let rest = |host: String| {
        let request = http.get(format!("{}/api/dev/mailbox", server.base)).header("host", host);
        async move { request.send().await.unwrap() }
    };
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), "dev.box.lan".to_string()] {
        assert_eq!(rest(host.clone()).await.status(), 200, "Host: {host}");
    }
    for host in [format!("evil.example:{port}"), format!("localhost.evil.example:{port}"), "10.0.0.1".into()] {
        let answer = rest(host.clone()).await;
        assert_eq!(answer.status(), 421, "Host: {host}");
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["code"], "permission_denied", "{body}");
    }

    // gRPC names its host in `:authority`.
    let grpc = |authority: &str| {
        let endpoint = tonic::transport::Endpoint::from_shared(server.base.clone())
            .unwrap()
            .origin(format!("http://{authority}").parse().unwrap());
        async move {
            let channel = endpoint.connect().await.unwrap();
            cutx_proto::pb::dev_mailbox_service_client::DevMailboxServiceClient::new(channel)
                .list_dev_mail(cutx_proto::pb::ListDevMailRequest {})
                .await
        }
    };
    assert!(grpc(&format!("127.0.0.1:{port}")).await.is_ok());
    let refused = grpc(&format!("evil.example:{port}")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    // gRPC-web over HTTP/1.1 names it in `Host`.
    let web = http
        .post(format!("{}/cutx.v1.DevMailboxService/ListDevMail", server.base))
        .header("host", format!("evil.example:{port}"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(web.headers().get("grpc-status").map(|v| v.to_str().unwrap()), Some("7"), "{:?}", web.headers());
    server.stop().await;
}
