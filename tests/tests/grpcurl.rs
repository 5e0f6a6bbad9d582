//! The real `grpcurl` (1.8.6, reflection v1alpha) against `cutx dev`: it lists the public
//! services, not the internal ones, and signs in and creates a job with nothing but reflection.
//! `scripts/test.sh` installs grpcurl and sets `CUTX_REQUIRE_TOOLS=1`, so there this test fails
//! rather than skips when the tool is missing.

use std::process::Command;

use cutx_tests::Server;
use serde_json::Value;

fn grpcurl_available() -> bool {
    let found = Command::new("grpcurl").arg("-version").output().is_ok_and(|o| o.status.success());
    if !found && std::env::var("CUTX_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!("grpcurl is not installed (scripts/install-test-tools.sh installs it)");
    }
    found
}

/// `grpcurl -plaintext <flags> <address> <what>`, where `what` is `list` or a method.
fn grpcurl(server: &Server, flags: &[&str], what: &str) -> String {
    let addr = server.addr.to_string();
    let mut all = vec!["-plaintext"];
    all.extend_from_slice(flags);
    all.extend([addr.as_str(), what]);
    let out = Command::new("grpcurl").args(&all).output().expect("running grpcurl");
    assert!(out.status.success(), "grpcurl {all:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_the_public_services_and_creates_a_job_through_reflection() {
    if !grpcurl_available() {
        eprintln!("grpcurl not installed: skipped");
        return;
    }
    let server = Server::spawn().await;
    let s = &server;
    let services = tokio::task::block_in_place(|| grpcurl(s, &[], "list"));
    for expected in ["cutx.v1.AuthService", "cutx.v1.JobService", "cutx.v1.BillingService", "grpc.health.v1.Health"] {
        assert!(services.lines().any(|l| l == expected), "{expected} not listed:\n{services}");
    }
    assert!(!services.contains("Internal"), "an internal service is listed:\n{services}");

    let token = tokio::task::block_in_place(|| {
        grpcurl(s, &["-d", r#"{"email":"ada@example.com"}"#], "cutx.v1.AuthService/RequestMagicLink");
        let mail: Value = serde_json::from_str(&grpcurl(s, &[], "cutx.v1.DevMailboxService/ListDevMail")).unwrap();
        let link = mail["messages"][0]["link"].as_str().unwrap().to_string();
        let link_token = link.split("token=").nth(1).unwrap().to_string();
        let body = format!(r#"{{"token":"{link_token}"}}"#);
        let verified: Value =
            serde_json::from_str(&grpcurl(s, &["-d", &body], "cutx.v1.AuthService/VerifyMagicLink")).unwrap();
        verified["token"].as_str().unwrap().to_string()
    });
    let auth = format!("authorization: Bearer {token}");
    let created: Value = tokio::task::block_in_place(|| {
        let body = r#"{"prompt":"Recycled glass vases","aspectRatio":"4:5"}"#;
        serde_json::from_str(&grpcurl(s, &["-H", &auth, "-d", body], "cutx.v1.JobService/GenerateStaticAd")).unwrap()
    });
    assert_eq!(created["status"], "JOB_STATUS_QUEUED");
    let job_id = created["jobId"].as_str().unwrap().to_string();
    let job = cutx_tests::eventually("the job to complete", std::time::Duration::from_secs(30), || {
        let body = format!(r#"{{"id":"{job_id}"}}"#);
        let auth = auth.clone();
        async move {
            let got: Value = tokio::task::block_in_place(|| {
                serde_json::from_str(&grpcurl(s, &["-H", &auth, "-d", &body], "cutx.v1.JobService/GetJob")).unwrap()
            });
            (got["job"]["status"] == "JOB_STATUS_COMPLETED").then_some(got)
        }
    })
    .await;
    assert_eq!(job["job"]["outputs"][0]["contentType"], "image/png");
    let health = tokio::task::block_in_place(|| grpcurl(s, &[], "grpc.health.v1.Health/Check"));
    assert!(health.contains("SERVING"), "{health}");
}
