//! A backend failing in the middle of a request: every transport answers a bare `INTERNAL`, and
//! no word of the database's own (SQL, table names, driver text) reaches the client.

use cutx_proto::pb;
use cutx_tests::{Client, Mode, Server, Transport};
use sea_orm::ConnectionTrait;
use tonic::Code;

/// Words any of SQLite's, PostgreSQL's or sea-orm's errors would carry.
const BACKEND_WORDS: [&str; 9] =
    ["job_outputs", "sql", "sqlite", "postgres", "relation", "table", "query", "execution", "database"];

#[tokio::test]
async fn a_database_failing_mid_request_answers_internal_with_no_sql_in_dev() {
    a_database_failing_mid_request_answers_internal_with_no_sql(Mode::Dev).await;
}

#[tokio::test]
async fn a_database_failing_mid_request_answers_internal_with_no_sql_when_distributed() {
    a_database_failing_mid_request_answers_internal_with_no_sql(Mode::Distributed).await;
}

async fn a_database_failing_mid_request_answers_internal_with_no_sql(mode: Mode) {
    let Some(server) = Server::start(mode).await else { return };
    let mut rest = Client::new(&server, Transport::Rest);
    rest.sign_in("broken-db@example.com").await;
    let job = rest
        .static_ad(pb::GenerateStaticAdRequest { prompt: "A lamp on a desk".into(), ..Default::default() })
        .await
        .unwrap();
    rest.wait_for_job(&job.job_id).await;
    assert_eq!(rest.list_jobs(10, "").await.unwrap().jobs.len(), 1, "listing works before the failure");

    // The table of jobs' files goes away under the running service: listing reads the jobs, then
    // fails reading their files.
    let db = server.database().await;
    db.execute_unprepared("ALTER TABLE job_outputs RENAME TO job_outputs_gone").await.unwrap();

    for transport in Transport::ALL {
        let mut client = Client::new(&server, transport);
        client.set_token(rest.token().map(str::to_string));
        let err = client.list_jobs(10, "").await.unwrap_err();
        assert_eq!(err.code, Code::Internal, "{transport:?}: {err:?}");
        assert_eq!(err.message, "internal error", "{transport:?}");
        if transport == Transport::Rest {
            assert_eq!(err.http, Some(500));
        }
        let said = format!("{err:?}").to_lowercase();
        for word in BACKEND_WORDS {
            assert!(!said.contains(word), "{transport:?} answered a backend's word {word:?}: {said}");
        }
    }

    // The raw REST body too, every byte of it.
    let response = reqwest::Client::new()
        .get(format!("{}/api/jobs", server.base))
        .bearer_auth(rest.token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 500);
    let body = response.text().await.unwrap().to_lowercase();
    for word in BACKEND_WORDS {
        assert!(!body.contains(word), "the REST body carries {word:?}: {body}");
    }

    db.execute_unprepared("ALTER TABLE job_outputs_gone RENAME TO job_outputs").await.unwrap();
    assert_eq!(rest.list_jobs(10, "").await.unwrap().jobs.len(), 1, "listing works again after it");
}
