//! Rotating the session secret signs nobody out: with the new secret current and the old one in
//! `CUTX_SESSION_SECRET_PREVIOUS`, the gateway and auth-svc (separate processes) take a token the
//! old secret signed, new sign-ins get tokens of the new one, and a token of any other secret is
//! no session at all.

use cutx_platform::secret::Secret;
use cutx_platform::session::SessionKey;
use cutx_tests::{Client, Infra, Server, Transport};
use tonic::Code;

const OLD: &str = "the-old-session-secret-0123456789";
const NEW: &str = "the-new-session-secret-9876543210";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_old_tokens_still_work_new_ones_use_the_new_secret_and_others_are_refused() {
    let Some(infra) = Infra::from_env() else { return };
    let env = [("CUTX_SESSION_SECRET", NEW), ("CUTX_SESSION_SECRET_PREVIOUS", OLD)];
    let server = Server::spawn_distributed_with(&infra, &env).await;
    let mut client = Client::new(&server, Transport::Rest);
    let user = client.sign_in("rotated@example.com").await;
    let fresh = client.token().unwrap().to_string();
    let key = |s: &str| SessionKey::new(&Secret::new(s.into()));
    assert!(key(NEW).verify(&fresh).is_ok(), "a new sign-in is signed with the new secret");
    assert!(key(OLD).verify(&fresh).is_err());

    let user_id = user.id.parse().unwrap();
    let (old_token, _) = key(OLD).issue(user_id, chrono::Utc::now());
    let (stranger, _) = key("a-secret-nobody-configured-00000").issue(user_id, chrono::Utc::now());
    for transport in [Transport::Rest, Transport::Grpc, Transport::GrpcWeb] {
        let mut old = Client::new(&server, transport);
        old.set_token(Some(old_token.clone()));
        assert_eq!(old.me().await.unwrap().id, user.id, "{transport:?}: a token of the previous secret");
        let mut other = Client::new(&server, transport);
        other.set_token(Some(stranger.clone()));
        assert_eq!(other.me().await.unwrap_err().code, Code::Unauthenticated, "{transport:?}: another secret");
    }

    // auth-svc takes the old token too: its logout ends that session.
    let mut old = Client::new(&server, Transport::Rest);
    old.set_token(Some(old_token));
    old.logout().await.unwrap();
    cutx_tests::eventually("the old token's session ended", std::time::Duration::from_secs(5), || async {
        matches!(old.me().await, Err(e) if e.code == Code::Unauthenticated).then_some(())
    })
    .await;
    assert!(client.me().await.is_ok(), "the other session of the user goes on");
    server.stop().await;
}
