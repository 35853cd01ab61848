//! The `dehr` binary as a user runs it: help texts, a node on a free port that answers
//! /health and exits cleanly on SIGTERM, and the advice given for a taken port.

// Test helpers outside #[test] functions: a failed unwrap is a failed test, which is the point.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn dehr() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dehr"));
    command.env("RUST_LOG", "warn");
    command
}

#[test]
fn every_command_has_help_with_an_example() {
    for args in [
        vec!["--help"],
        vec!["up", "--help"],
        vec!["node", "--help"],
        vec!["bench", "--help"],
        vec!["identity", "create", "--help"],
        vec!["identity", "list", "--help"],
        vec!["identity", "show", "--help"],
        vec!["identity", "add-node", "--help"],
        vec!["identity", "remove-node", "--help"],
        vec!["identity", "export", "--help"],
        vec!["identity", "import", "--help"],
        vec!["identity", "recover", "--help"],
        vec!["identity", "phrase", "--help"],
        vec!["log", "--help"],
        vec!["import", "--help"],
        vec!["export", "--help"],
        vec!["agent", "--help"],
        vec!["share", "--help"],
        vec!["revoke", "--help"],
        vec!["receive", "--help"],
        vec!["sync", "--help"],
        vec!["sync", "status", "--help"],
    ] {
        let output = dehr().args(&args).output().expect("runs");
        assert!(output.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains("Example"),
            "{args:?} help has no example:\n{text}"
        );
    }
    let output = dehr().args(["node", "--help"]).output().expect("runs");
    let text = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--listen",
        "--data-dir",
        "--max-record-size",
        "--did-dht-gateway",
        "--log-format",
        "--peer",
        "--replicate-every",
    ] {
        assert!(text.contains(option), "node --help lacks {option}");
    }
}

#[test]
fn a_bad_size_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let output = dehr()
        .args(["node", "--max-record-size", "lots", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("50mb"));
}

/// Starts `dehr node` on a free port; returns the child and the URL it printed.
fn start_node(data_dir: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let mut child = dehr()
        .args(["node", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("a line on stdout");
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    (child, url)
}

fn wait_for_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(unix)]
#[tokio::test]
async fn node_serves_then_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = start_node(&dir.path().join("data"), &["--max-record-size", "50mb"]);
    assert!(!url.ends_with(":0"), "the real port is printed: {url}");

    let health: serde_json::Value = reqwest::get(format!("{url}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, serde_json::json!({"ok": true}));
    let info: serde_json::Value = reqwest::get(format!("{url}/info"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["maxFileSize"], 50u64 << 20);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = wait_for_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        dir.path().join("data").exists(),
        "the data directory was created"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_taken_port_says_what_to_do() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = dehr()
        .args(["node", "--listen", &addr.to_string(), "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("already in use") && stderr.contains("--listen"),
        "{stderr}"
    );
}

/// Acknowledged writes survive `kill -9`: every write that got 202 is there after a restart.
#[cfg(unix)]
#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    use dehr_core::crypto::{KeyType, generate_private_jwk};
    use dehr_dwn::builders::{self, WriteOptions};
    use dehr_dwn::filter::RecordsFilter;

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let private = generate_private_jwk(KeyType::Ed25519);
    let did = dehr_did::did_jwk_from_jwk(&private.public());
    let signer = dehr_core::jws::PrivateKeySigner::new(format!("{did}#0"), private).unwrap();
    let http = reqwest::Client::new();
    let rpc = |message: serde_json::Value| {
        serde_json::json!({"jsonrpc": "2.0", "id": "1", "method": "dwn.processMessage",
            "params": {"target": did, "message": message}})
        .to_string()
    };

    let (mut child, url) = start_node(&data_dir, &[]);
    let mut acknowledged = 0;
    for i in 0..40u32 {
        // Half the records carry more than 30,000 bytes, so they go to data files.
        let body: Vec<u8> = if i % 2 == 0 {
            format!("note {i}").into_bytes()
        } else {
            vec![i as u8; 40_000]
        };
        let options = WriteOptions {
            schema: Some("https://example.org/crash".into()),
            ..WriteOptions::for_data(&body, "text/plain")
        };
        let message =
            serde_json::to_value(builders::records_write(options, &signer).unwrap()).unwrap();
        let reply: serde_json::Value = http
            .post(format!("{url}/"))
            .header("dwn-request", rpc(message))
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(reply["result"]["reply"]["status"]["code"], 202, "{reply}");
        acknowledged += 1;
    }
    child.kill().unwrap(); // SIGKILL: no chance to flush anything
    child.wait().unwrap();

    let (mut child, url) = start_node(&data_dir, &[]);
    let filter = RecordsFilter {
        schema: Some("https://example.org/crash".into()),
        ..Default::default()
    };
    let query =
        serde_json::to_value(builders::records_query(filter, None, None, Some(&signer)).unwrap())
            .unwrap();
    let reply: serde_json::Value = http
        .post(format!("{url}/"))
        .header("dwn-request", rpc(query))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = reply["result"]["reply"]["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(entries.len(), acknowledged, "{reply}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `dehr identity …` against a real `dehr node`: create, list, show, add and remove a node,
/// export and import a backup, recover from the phrase; a wrong passphrase is refused; `dehr
/// log` shows a stranger's query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_commands_work_against_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, url) = start_node(&dir.path().join("node"), &[]);
    let (mut second, second_url) = start_node(&dir.path().join("node2"), &[]);
    let home = dir.path().join("home");
    let run = |home: &std::path::Path, passphrase: &str, args: &[&str]| {
        let output = dehr()
            .env("DEHR_HOME", home)
            .env("DEHR_PASSPHRASE", passphrase)
            .env_remove("DEHR_DID_DHT_GATEWAYS")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let pass = "cli test passphrase";
    let (ok, stdout, stderr) = run(
        &home,
        pass,
        &[
            "identity", "create", "--name", "alice", "--role", "patient", "--node", &url,
        ],
    );
    assert!(ok, "{stderr}");
    let phrase = stdout
        .lines()
        .find(|l| l.split(' ').count() == 24)
        .expect("the phrase")
        .to_owned();
    let did = stdout
        .split_whitespace()
        .find(|w| w.starts_with("did:dht:"))
        .expect("the DID")
        .to_owned();

    let (ok, stdout, _) = run(&home, pass, &["identity", "list"]);
    assert!(
        ok && stdout.contains(&did) && stdout.contains("patient"),
        "{stdout}"
    );
    let (ok, stdout, _) = run(&home, pass, &["identity", "show", "alice"]);
    assert!(
        ok && stdout.contains("DecentralizedWebNode") && stdout.contains("#enc"),
        "{stdout}"
    );

    let (ok, _, stderr) = run(&home, pass, &["identity", "add-node", "alice", &second_url]);
    assert!(ok, "{stderr}");
    let (ok, stdout, _) = run(&home, pass, &["identity", "show", "alice"]);
    assert!(ok && stdout.contains(&second_url), "{stdout}");
    let (ok, _, stderr) = run(&home, pass, &["identity", "remove-node", "alice", &url]);
    assert!(ok, "{stderr}");

    let (ok, _, stderr) = run(&home, "wrong passphrase", &["identity", "list"]);
    assert!(!ok && stderr.contains("wrong passphrase"), "{stderr}");

    let backup = dir.path().join("backup.json");
    let (ok, _, stderr) = run(
        &home,
        pass,
        &["identity", "export", "--out", backup.to_str().unwrap()],
    );
    assert!(ok, "{stderr}");
    let other = dir.path().join("other");
    let (ok, stdout, stderr) = run(
        &other,
        pass,
        &["identity", "import", backup.to_str().unwrap()],
    );
    assert!(ok && stdout.contains(&did), "{stdout}{stderr}");

    // Recovery finds the DID through the second node, where the latest document is.
    let recovered = dir.path().join("recovered");
    let output = dehr()
        .env("DEHR_HOME", &recovered)
        .env("DEHR_PASSPHRASE", pass)
        .env("DEHR_RECOVERY_PHRASE", &phrase)
        .args(["identity", "recover", "--gateway", &second_url])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&did) && stdout.contains(&second_url),
        "{stdout}"
    );

    // A stranger's anonymous query to alice's node shows in her access log.
    let query = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "dwn.processMessage",
        "params": { "target": did, "message": { "descriptor": {
            "interface": "Records", "method": "Query",
            "messageTimestamp": "2026-01-01T00:00:00.000000Z",
            "filter": { "protocol": "https://stranger.example/p" } } } }
    });
    let reply = reqwest::Client::new()
        .post(&second_url)
        .header("dwn-request", query.to_string())
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success());
    let (ok, stdout, stderr) = run(&home, pass, &["log", "alice"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("anonymous") && stdout.contains("RecordsQuery"),
        "{stdout}"
    );

    let _ = node.kill();
    let _ = second.kill();
    let _ = node.wait();
    let _ = second.wait();
}

/// `dehr import`: a valid file is imported with a summary; an invalid resource is refused with
/// its path and rule, and the command fails; importing again writes nothing.
#[test]
fn import_writes_valid_resources_and_reports_refusals() {
    let fixtures = std::env::var_os("DEHR_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        });
    assert!(
        fixtures.join("fhir-r4").is_dir(),
        "fixtures not found at {}: set DEHR_FIXTURES",
        fixtures.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let (mut node, url) = start_node(&dir.path().join("node"), &[]);
    let home = dir.path().join("home");
    let run = |args: &[&str]| {
        let output = dehr()
            .env("DEHR_HOME", &home)
            .env("DEHR_PASSPHRASE", "cli import test")
            .env(
                "DEHR_FHIR_DEFINITIONS",
                fixtures.join("fhir-r4/definitions"),
            )
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, stderr) = run(&[
        "identity", "create", "--name", "alice", "--role", "patient", "--node", &url,
    ]);
    assert!(ok, "{stderr}");
    let file = dir.path().join("resources.ndjson");
    std::fs::write(
        &file,
        concat!(
            r#"{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1980-02-29"}"#,
            "\n",
            r#"{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"sideways"}]}}"#,
            "\n"
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let (ok, stderr) = run(&["import", "--identity", "alice", file]);
    assert!(!ok, "a refusal fails the command");
    assert!(stderr.contains("1 written (Patient 1)"), "{stderr}");
    assert!(
        stderr.contains("Condition/c1") && stderr.contains("Condition.clinicalStatus"),
        "{stderr}"
    );
    let (_, stderr) = run(&["import", "--identity", "alice", file]);
    assert!(
        stderr.contains("0 written") && stderr.contains("1 already present"),
        "{stderr}"
    );

    // Out again, as NDJSON per type and as a summary.
    let out = dir.path().join("export");
    let (ok, stderr) = run(&[
        "export",
        "--identity",
        "alice",
        "--format",
        "ndjson",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let patient = std::fs::read_to_string(out.join("Patient.ndjson")).unwrap();
    assert!(
        patient.contains("\"birthDate\":\"1980-02-29\""),
        "{patient}"
    );
    let ips = dir.path().join("ips.json");
    let (ok, stderr) = run(&[
        "export",
        "--identity",
        "alice",
        "--format",
        "ips",
        "--out",
        ips.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(std::fs::read_to_string(&ips).unwrap().contains("60591-5"));

    // And served over FHIR: `dehr agent` prints its base URL and token, then answers.
    let mut agent = dehr()
        .env("DEHR_HOME", &home)
        .env("DEHR_PASSPHRASE", "cli import test")
        .env(
            "DEHR_FHIR_DEFINITIONS",
            fixtures.join("fhir-r4/definitions"),
        )
        .args(["agent", "--identity", "alice", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(agent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let (base, token) = line.trim().split_once(" token=").expect("URL and token");
    let body = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::Client::new()
            .get(format!("{base}/Patient/p1"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    // The portal is served beside the API.
    let portal = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::get(format!("{}/unlock", base.trim_end_matches("/fhir")))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    // An unknown FHIR path still gets an OperationOutcome, not a portal page.
    let (unknown_status, unknown) = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let reply = reqwest::Client::new()
            .get(format!("{base}/Patient/p1/not-an-interaction/x"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (reply.status().as_u16(), reply.text().await.unwrap())
    });
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(body.contains("\"birthDate\":\"1980-02-29\""), "{body}");
    assert!(portal.contains("Unlock your vault"), "{portal}");
    assert_eq!(unknown_status, 404);
    assert!(unknown.contains("OperationOutcome"), "{unknown}");
    let _ = node.kill();
    let _ = node.wait();
}

/// `dehr up --demo`: a node, the demo identities with an imported record, and the portal, on
/// free ports; a second run reuses all of it (no identity created, nothing imported again).
#[test]
fn up_demo_starts_everything_and_reuses_its_demo() {
    let fixtures = std::env::var_os("DEHR_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        });
    let dir = tempfile::tempdir().unwrap();
    let run = |round: u32| {
        let stderr_path = dir.path().join(format!("stderr-{round}"));
        let mut up = dehr()
            .args([
                "up",
                "--demo",
                "--listen",
                "127.0.0.1:0",
                "--node-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--fixtures")
            .arg(&fixtures)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| {
                    panic!(
                        "dehr up ended early: {}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    )
                })
                .unwrap();
            if let Some(rest) = line.strip_prefix("DeHR portal: ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        let page = tokio::runtime::Runtime::new().unwrap().block_on(async {
            reqwest::get(format!("{url}unlock"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        let _ = up.kill();
        let _ = up.wait();
        (page, std::fs::read_to_string(&stderr_path).unwrap())
    };
    let (page, stderr) = run(1);
    assert!(page.contains("dehr demo passphrase"), "{page}");
    assert!(stderr.contains("Created Demo patient"), "{stderr}");
    assert!(stderr.contains("Demo import of"), "{stderr}");
    assert!(stderr.contains("shared the whole record"), "{stderr}");
    let (page, stderr) = run(2);
    assert!(page.contains("Unlock your vault"), "{page}");
    assert!(
        !stderr.contains("Created")
            && !stderr.contains("Demo import")
            && !stderr.contains("shared the whole"),
        "the second run redid the demo:\n{stderr}"
    );
}
