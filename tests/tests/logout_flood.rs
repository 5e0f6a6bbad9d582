//! Logout cannot be switched off by flooding it: 5,000 sessions end in a burst (each a real
//! session token, logged out through the gateway as any client would), and then a victim's
//! logout still takes effect on every gateway: `cutx dev`'s one, and two `cutx gateway`
//! processes of a distributed mesh. Gateways follow ended sessions by a position that always
//! moves forward; an earlier follower re-read one page of its overlap window forever once more
//! than a page of sessions ended in it.

use std::time::{Duration, Instant};

use cutx_platform::ids::UserId;
use cutx_tests::{Client, Infra, Mode, Server, Transport, eventually};
use futures::StreamExt;
use tonic::Code;

const FLOOD: usize = 5_000;

async fn flood_then_victim(mode: Mode) {
    let mut server = match mode {
        Mode::Dev => Server::spawn().await,
        Mode::Distributed => {
            let Some(infra) = Infra::from_env() else { return };
            Server::spawn_distributed(&infra).await
        }
    };
    let mut gateways = vec![server.base.clone()];
    if mode == Mode::Distributed {
        gateways.push(server.another_gateway().await);
    }

    // The victim signs in, and each gateway knows the session.
    let mut victim = Client::new(&server, Transport::Rest);
    victim.sign_in("victim@example.com").await;
    let token = victim.token().unwrap().to_string();
    let on_each: Vec<Client> = gateways
        .iter()
        .map(|base| {
            let mut c = Client::at(base, Transport::Rest);
            c.set_token(Some(token.clone()));
            c
        })
        .collect();
    for client in &on_each {
        client.me().await.unwrap_or_else(|e| panic!("{}: the victim is signed in: {e:?}", client.base()));
    }

    // The flood: sessions of many users, each ended by its own logout, 64 at a time, spread
    // over the gateways.
    let key = server.session_key();
    let http = cutx_tests::http();
    let started = Instant::now();
    let ended = futures::stream::iter(0..FLOOD)
        .map(|i| {
            let (jwt, _) = key.issue(UserId::new(), chrono::Utc::now());
            let url = format!("{}/api/auth/logout", gateways[i % gateways.len()]);
            let http = http.clone();
            async move {
                let answer =
                    http.post(url).bearer_auth(jwt).header("content-type", "application/json").body("{}").send().await;
                answer.is_ok_and(|a| a.status().is_success())
            }
        })
        .buffer_unordered(64)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    assert_eq!(ended, FLOOD, "every logout of the flood is answered 200");
    eprintln!("{mode:?}: {FLOOD} sessions ended in {:?}", started.elapsed());

    // The victim's logout, on the first gateway, holds on every gateway within a second or so
    // (each polls once a second; the deadline leaves room for a loaded machine).
    victim.logout().await.expect("logout");
    let logged_out = Instant::now();
    for client in &on_each {
        eventually(&format!("the victim's session refused by {}", client.base()), Duration::from_secs(5), || async {
            match client.me().await {
                Err(e) if e.code == Code::Unauthenticated => Some(()),
                _ => None,
            }
        })
        .await;
    }
    eprintln!("{mode:?}: the victim's logout held on {} gateway(s) after {:?}", gateways.len(), logged_out.elapsed());

    // A session that ends after the flood does too, so the followers keep moving.
    let mut late = Client::new(&server, Transport::Rest);
    late.sign_in("late@example.com").await;
    late.logout().await.expect("logout");
    let late_token = late.token().unwrap().to_string();
    for base in &gateways {
        let mut client = Client::at(base, Transport::Rest);
        client.set_token(Some(late_token.clone()));
        eventually(&format!("a later session refused by {base}"), Duration::from_secs(5), || async {
            matches!(client.me().await, Err(e) if e.code == Code::Unauthenticated).then_some(())
        })
        .await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_five_thousand_logouts_in_a_burst_a_victims_logout_still_holds_in_cutx_dev() {
    flood_then_victim(Mode::Dev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_five_thousand_logouts_in_a_burst_a_victims_logout_still_holds_on_every_gateway() {
    flood_then_victim(Mode::Distributed).await;
}
