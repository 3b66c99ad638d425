//! `AccountService` end to end: the context mounted in a real server on
//! `127.0.0.1:0`, driven through the generated client, with this test's logs
//! captured. No response, error, event, log line or idempotency record may
//! contain a password or a password hash.

use std::{
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use strata_identity::password::PasswordPolicy;
use strata_identity::store;
use strata_proto::identity::v1::{self as pb, account_service_client::AccountServiceClient};
use strata_rpc::telemetry::{self, LogFormat};
use tokio_stream::StreamExt;
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

/// Log lines written to memory, for the test to read back.
#[derive(Debug, Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Everything the client saw, as text.
#[derive(Debug, Default)]
struct Seen(Vec<String>);

impl Seen {
    fn ok<T: std::fmt::Debug>(&mut self, result: Result<tonic::Response<T>, tonic::Status>) -> T {
        match result {
            Ok(response) => {
                let response = response.into_inner();
                self.0.push(format!("{response:?}"));
                response
            }
            Err(status) => panic!("{status:?}"),
        }
    }

    fn err<T: std::fmt::Debug>(
        &mut self,
        result: Result<tonic::Response<T>, tonic::Status>,
    ) -> tonic::Status {
        match result {
            Ok(response) => panic!("expected an error, got {:?}", response.into_inner()),
            Err(status) => {
                self.0.push(format!(
                    "{:?} {} {}",
                    status.code(),
                    status.message(),
                    String::from_utf8_lossy(status.details())
                ));
                self.0.push(format!("{:?}", status.get_error_details()));
                status
            }
        }
    }
}

const FIRST: &str = "first secret passphrase 7Kq!";
const SECOND: &str = "second secret passphrase 9Zx?";
const WRONG: &str = "wrong secret passphrase 3Mn#";
const SHORT: &str = "Sh0rt!";
const CONTROL: &str = "control\u{7}secret passphrase";

fn register(request_id: &str, email: &str, password: &str, name: &str) -> pb::RegisterAccountRequest {
    pb::RegisterAccountRequest {
        request_id: request_id.into(),
        email: email.into(),
        password: password.into(),
        display_name: name.into(),
        roles: vec![pb::Role::Customer.into(), pb::Role::Staff.into()],
    }
}

fn verify(email: &str, password: &str) -> pb::VerifyCredentialsRequest {
    pb::VerifyCredentialsRequest {
        email: email.into(),
        password: password.into(),
    }
}

fn field_violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// The PHC string of the account's hash as stored, and its hash part.
async fn stored_hash(config: &strata_store::StoreConfig, email: &str) -> [String; 2] {
    let repo = store::open(config).await.unwrap();
    let account = repo
        .find_by_email(&strata_identity::domain::Email::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap();
    let phc = account.password_hash().phc().unwrap().to_owned();
    let hash_part = phc.rsplit('$').next().unwrap().to_owned();
    [phc, hash_part]
}

#[tokio::test]
async fn no_password_or_hash_leaves_the_context() {
    let captured = Captured::default();
    let writer = captured.clone();
    let _guard = tracing::subscriber::set_default(telemetry::subscriber(
        LogFormat::Json,
        tracing_subscriber::EnvFilter::new("trace"),
        false,
        move || writer.clone(),
    ));

    let (config, dir) = super::sqlite_config();
    let service = strata_identity::mount_with(config.clone(), PasswordPolicy::for_tests())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(strata_rpc::Server::new().host(service).serve(listener, async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_lazy();
    let mut client = AccountServiceClient::new(channel);
    let mut seen = Seen::default();

    // Register, retry, reuse the key, take the email, break the password rules.
    let account = seen
        .ok(client
            .register_account(register("reg-1", " Ada@Example.COM ", FIRST, "Ada"))
            .await)
        .account
        .unwrap();
    assert_eq!(account.email, "ada@example.com");
    let id = account.id.clone();
    let replayed = seen
        .ok(client
            .register_account(register("reg-1", "ada@example.com", FIRST, "Ada"))
            .await)
        .account
        .unwrap();
    assert_eq!(replayed, account, "a retry gets the first answer");
    let reused = seen.err(
        client
            .register_account(register("reg-1", "ada@example.com", FIRST, "Eve"))
            .await,
    );
    assert_eq!(reused.code(), Code::InvalidArgument);
    assert_eq!(field_violations(&reused), ["request_id"]);
    let taken = seen.err(
        client
            .register_account(register("reg-2", "ADA@example.com", SECOND, "Eve"))
            .await,
    );
    assert_eq!(taken.code(), Code::AlreadyExists);
    assert_eq!(
        taken
            .get_details_error_info()
            .unwrap()
            .metadata
            .get("field")
            .map(String::as_str),
        Some("email")
    );
    let short = seen.err(
        client
            .register_account(register("reg-3", "bob@example.com", SHORT, "Bob"))
            .await,
    );
    assert_eq!(field_violations(&short), ["password"]);
    let control = seen.err(
        client
            .register_account(register("reg-4", "bob@example.com", CONTROL, "Bob"))
            .await,
    );
    assert_eq!(field_violations(&control), ["password"]);
    let mut bad = register("reg-5", "bob", FIRST, "");
    bad.roles = vec![7];
    let bad = seen.err(client.register_account(bad).await);
    assert_eq!(field_violations(&bad), ["email", "display_name", "roles"]);
    let first_hash = stored_hash(&config, "ada@example.com").await;

    // Verify: right, wrong, unknown.
    let signed_in = seen.ok(client.verify_credentials(verify("ada@example.com", FIRST)).await);
    assert_eq!(signed_in.account_id, id);
    assert_eq!(
        signed_in.roles,
        [i32::from(pb::Role::Customer), i32::from(pb::Role::Staff)]
    );
    assert_eq!(signed_in.status, i32::from(pb::AccountStatus::Active));
    let wrong = seen.err(client.verify_credentials(verify("ada@example.com", WRONG)).await);
    let unknown = seen.err(
        client
            .verify_credentials(verify("nobody@example.com", FIRST))
            .await,
    );
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(
        (unknown.code(), unknown.message(), unknown.details()),
        (wrong.code(), wrong.message(), wrong.details()),
        "an unknown email and a wrong password are answered alike"
    );

    // Change the password: wrong current one, then right.
    let change = |request_id: &str, current: &str, new: &str| pb::ChangePasswordRequest {
        id: id.clone(),
        request_id: request_id.into(),
        expected_version: Some(1),
        current_password: current.into(),
        new_password: new.into(),
    };
    let refused = seen.err(client.change_password(change("pw-1", WRONG, SECOND)).await);
    assert_eq!(refused.code(), Code::Unauthenticated);
    let changed = seen
        .ok(client.change_password(change("pw-2", FIRST, SECOND)).await)
        .account
        .unwrap();
    assert_eq!(changed.version, 2);
    let retried = seen
        .ok(client.change_password(change("pw-2", FIRST, SECOND)).await)
        .account
        .unwrap();
    assert_eq!(retried, changed);
    let second_hash = stored_hash(&config, "ada@example.com").await;
    seen.err(client.verify_credentials(verify("ada@example.com", FIRST)).await);
    seen.ok(client.verify_credentials(verify("ada@example.com", SECOND)).await);

    // Open a followed stream, then suspend: it delivers the suspension.
    let mut follow = client
        .stream_events(pb::StreamEventsRequest {
            after_position: 0,
            follow: true,
        })
        .await
        .unwrap()
        .into_inner();
    let suspend = pb::SuspendAccountRequest {
        id: id.clone(),
        request_id: "sus-1".into(),
        expected_version: Some(2),
        reason: "chargebacks".into(),
    };
    let suspended = seen
        .ok(client.suspend_account(suspend.clone()).await)
        .account
        .unwrap();
    assert_eq!(suspended.status, i32::from(pb::AccountStatus::Suspended));
    let twice = seen.err(
        client
            .suspend_account(pb::SuspendAccountRequest {
                request_id: "sus-2".into(),
                expected_version: None,
                ..suspend
            })
            .await,
    );
    assert_eq!(twice.code(), Code::FailedPrecondition);
    let denied = seen.err(client.verify_credentials(verify("ada@example.com", SECOND)).await);
    assert_eq!(denied.code(), Code::PermissionDenied);
    let not_told = seen.err(client.verify_credentials(verify("ada@example.com", WRONG)).await);
    assert_eq!(
        not_told.code(),
        Code::Unauthenticated,
        "a suspension is told only to the right password"
    );
    let reinstated = seen
        .ok(client
            .reinstate_account(pb::ReinstateAccountRequest {
                id: id.clone(),
                request_id: "rei-1".into(),
                expected_version: Some(3),
            })
            .await)
        .account
        .unwrap();
    assert_eq!(reinstated.status, i32::from(pb::AccountStatus::Active));
    let active = seen.err(
        client
            .reinstate_account(pb::ReinstateAccountRequest {
                id: id.clone(),
                request_id: "rei-2".into(),
                expected_version: None,
            })
            .await,
    );
    assert_eq!(active.code(), Code::FailedPrecondition);
    let got = seen.ok(client.get_account(pb::GetAccountRequest { id: id.clone() }).await);
    assert_eq!(got.account.unwrap().version, 4);

    // The events: the followed stream and a read from the start agree.
    let mut followed = Vec::new();
    while followed.len() < 4 {
        let event = tokio::time::timeout(Duration::from_secs(10), follow.next())
            .await
            .expect("the followed stream delivers every commit")
            .unwrap()
            .unwrap();
        seen.0.push(format!("{event:?}"));
        followed.push(event);
    }
    let all: Vec<_> = client
        .stream_events(pb::StreamEventsRequest {
            after_position: 0,
            follow: false,
        })
        .await
        .unwrap()
        .into_inner()
        .collect::<Result<_, _>>()
        .await
        .unwrap();
    assert_eq!(all, followed);
    use pb::stream_events_response::Event;
    assert!(matches!(&all[0].event, Some(Event::AccountRegistered(r)) if r.email == "ada@example.com"));
    assert!(matches!(all[1].event, Some(Event::AccountPasswordChanged(_))));
    assert!(matches!(&all[2].event, Some(Event::AccountSuspended(s)) if s.reason == "chargebacks"));
    assert!(matches!(all[3].event, Some(Event::AccountReinstated(_))));
    let resumed: Vec<_> = client
        .stream_events(pb::StreamEventsRequest {
            after_position: all[1].position,
            follow: false,
        })
        .await
        .unwrap()
        .into_inner()
        .collect::<Result<_, _>>()
        .await
        .unwrap();
    assert_eq!(resumed, all[2..], "resuming neither skips nor repeats");
    seen.0.extend(all.iter().map(|e| format!("{e:?}")));

    // What the store keeps beside the account: fingerprints and results.
    let pool = sqlx::SqlitePool::connect(config.url.expose()).await.unwrap();
    let records: Vec<(Vec<u8>, String)> = sqlx::query_as("select fingerprint, result from idempotency")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(records.len() >= 4, "{} records", records.len());
    let records: Vec<String> = records
        .into_iter()
        .map(|(fingerprint, result)| format!("{} {result}", String::from_utf8_lossy(&fingerprint)))
        .collect();
    pool.close().await;

    let _ = stop.send(());
    server.await.unwrap().unwrap();
    let logs = captured.text();
    let calls = logs.matches("call ended").count();
    assert!(calls >= 25, "every call was logged ({calls} lines)");

    let secrets = [FIRST, SECOND, WRONG, SHORT, CONTROL]
        .map(str::to_owned)
        .into_iter()
        .chain(first_hash)
        .chain(second_hash);
    for secret in secrets {
        for (what, text) in logs
            .lines()
            .map(|line| ("a log line", line))
            .chain(seen.0.iter().map(|s| ("a response, error or event", s.as_str())))
            .chain(records.iter().map(|r| ("an idempotency record", r.as_str())))
        {
            assert!(
                !text.contains(secret.as_str()),
                "{what} contains a secret: {text}"
            );
        }
    }
    println!(
        "security: {} responses/errors/events, {} log bytes ({calls} calls), {} idempotency records: no password, no hash",
        seen.0.len(),
        logs.len(),
        records.len()
    );
    std::fs::remove_dir_all(dir).unwrap();
}
