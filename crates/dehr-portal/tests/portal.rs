//! The portal's router over HTTP, with a real node on 127.0.0.1 and a real vault: forms
//! without the session's CSRF token are refused, onboarding shows the recovery phrase once,
//! imported records appear readable, locking (and idling) takes the vault away.

// Test helpers outside #[test] functions: a failed unwrap is a failed test, which is the point.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use dehr_agent::{AgentConfig, KdfCost};
use dehr_portal::{Portal, PortalConfig, SESSION_COOKIE};
use reqwest::StatusCode;

const PASSPHRASE: &str = "portal test passphrase";

fn fixtures() -> PathBuf {
    std::env::var_os("DEHR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        })
}

/// A node and a portal on free ports; the portal's URL (with a trailing slash).
async fn start(dir: &std::path::Path, idle_lock: Duration) -> String {
    let mut node_config = dehr_node::NodeConfig::new(dir.join("node"));
    node_config.listen = "127.0.0.1:0".parse().unwrap();
    node_config.replicate_interval = Duration::ZERO;
    let node = dehr_node::bind(node_config).await.unwrap();
    let node_url = node.url();
    tokio::spawn(node.run(std::future::pending()));

    let mut agent = AgentConfig::new(dir.join("agent"));
    agent.gateways = vec![node_url.clone()];
    agent.kdf = KdfCost {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };
    let definitions =
        dehr_fhir::Definitions::load(&fixtures().join("fhir-r4/definitions")).unwrap();
    let portal = Portal::new(PortalConfig {
        agent,
        nodes: vec![node_url],
        validator: dehr_fhir::Validator::new(&definitions).unwrap(),
        idle_lock,
        notice: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, portal.router()).await });
    url
}

/// A browser, as far as the portal can tell: one session cookie, no redirects followed.
struct Browser {
    client: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

struct Page {
    status: StatusCode,
    location: String,
    body: String,
}

impl Browser {
    fn new(base: &str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookie: None,
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(cookie) => request.header("cookie", format!("{SESSION_COOKIE}={cookie}")),
            None => request,
        };
        let response = request.send().await.unwrap();
        if let Some(set) = response.headers().get("set-cookie") {
            let set = set.to_str().unwrap();
            assert!(
                set.contains("HttpOnly") && set.contains("SameSite=Strict"),
                "{set}"
            );
            let value = set
                .split(';')
                .next()
                .unwrap()
                .trim_start_matches(&format!("{SESSION_COOKIE}="));
            self.cookie = Some(value.to_owned());
        }
        Page {
            status: response.status(),
            location: response
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let encode = |text: &str| {
            text.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        };
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"));
        self.send(request).await
    }

    /// The CSRF token of the forms on `path`.
    async fn csrf(&mut self, path: &str) -> String {
        let page = self.get(path).await;
        between(&page.body, "name=\"csrf\" value=\"", "\"").to_owned()
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .map(|i| i + start.len())
        .unwrap_or_else(|| panic!("no {start:?} in:\n{text}"));
    let to = text[from..].find(end).unwrap() + from;
    &text[from..to]
}

/// Creates the vault and a patient, confirms the phrase: the browser ends unlocked.
async fn onboard(browser: &mut Browser) {
    let csrf = browser.csrf("welcome").await;
    let page = browser
        .post(
            "welcome",
            &[
                ("csrf", &csrf),
                ("name", "Alice"),
                ("role", "patient"),
                ("passphrase", PASSPHRASE),
                ("passphrase_again", PASSPHRASE),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location, "/welcome/phrase");
    let page = browser.get("welcome/phrase").await;
    let list = between(&page.body, "<ol class=\"phrase\"", "</ol>");
    let words: Vec<&str> = list
        .split("<li>")
        .skip(1)
        .map(|w| w.split("</li>").next().unwrap())
        .collect();
    assert_eq!(words.len(), 24);
    let first: usize = between(&page.body, "<label for=\"first\">Word number ", "<")
        .parse()
        .unwrap();
    let second: usize = between(&page.body, "<label for=\"second\">Word number ", "<")
        .parse()
        .unwrap();
    // Shown once only.
    let again = browser.get("welcome/phrase").await;
    assert!(!again.body.contains("<ol class=\"phrase\""));
    // Until it is confirmed, the record's pages send the person back to it.
    assert_eq!(browser.get("dashboard").await.location, "/welcome/phrase");
    let page = browser
        .post(
            "welcome/phrase",
            &[
                ("csrf", &csrf),
                ("first", words[first - 1]),
                ("second", words[second - 1]),
            ],
        )
        .await;
    assert_eq!(page.location, "/");
}

#[tokio::test(flavor = "multi_thread")]
async fn forms_without_the_session_token_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = start(dir.path(), Duration::from_secs(600)).await;
    let mut browser = Browser::new(&url);
    let csrf = browser.csrf("welcome").await;
    assert!(csrf.len() >= 40);
    let form = |token: &'static str| {
        [
            ("csrf", token),
            ("name", "Mallory's pick"),
            ("role", "patient"),
            ("passphrase", PASSPHRASE),
            ("passphrase_again", PASSPHRASE),
        ]
    };
    let page = browser.post("welcome", &form("not-the-token")).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("security token"), "{}", page.body);
    // Another session's token does not count either (a cross-site form has none of its own).
    let mut other = Browser::new(&url);
    let page = other.post("welcome", &form("")).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        !dir.path().join("agent/vault.json").exists(),
        "nothing was created"
    );

    onboard(&mut browser).await;
    let page = browser.post("lock", &[("csrf", "forged")]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(
        browser.get("dashboard").await.status,
        StatusCode::OK,
        "still unlocked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn onboarding_import_a_readable_record_and_lock() {
    let dir = tempfile::tempdir().unwrap();
    let url = start(dir.path(), Duration::from_secs(600)).await;
    let mut browser = Browser::new(&url);
    assert_eq!(browser.get("").await.location, "/welcome");
    onboard(&mut browser).await;
    let csrf = browser.csrf("dashboard").await;
    let page = browser.get("dashboard").await;
    assert!(page.body.contains("Your record is empty"), "{}", page.body);
    let headers = browser
        .client
        .get(format!("{url}dashboard"))
        .send()
        .await
        .unwrap();
    let csp = headers.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");

    // Import: a patient and two weights, as NDJSON.
    let ndjson = concat!(
        r#"{"resourceType":"Patient","id":"p1","name":[{"given":["Alice"],"family":"Example"}],"gender":"female","birthDate":"1980-02-29"}"#,
        "\n",
        r#"{"resourceType":"Observation","id":"w1","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"29463-7","display":"Body Weight"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-10T09:00:00Z","valueQuantity":{"value":70.1,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}"#,
        "\n",
        r#"{"resourceType":"Observation","id":"w2","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"29463-7","display":"Body Weight"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-06-10T09:00:00Z","valueQuantity":{"value":71.5,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}"#,
        "\n"
    );
    let boundary = "dehr-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"alice.ndjson\"\r\n\
         Content-Type: application/fhir+ndjson\r\n\r\n{ndjson}\r\n--{boundary}--\r\n"
    );
    let request = browser
        .client
        .post(format!("{url}import"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body);
    let page = browser.send(request).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let job = page.location.trim_start_matches('/').to_owned();
    let mut finished = String::new();
    for _ in 0..300 {
        let page = browser.get(&job).await;
        if page.body.contains("Import finished") {
            finished = page.body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(finished.contains("alice.ndjson: 3 written"), "{finished}");

    // The dashboard and the record page read as a person reads.
    let page = browser.get("dashboard").await;
    assert!(page.body.contains("Alice Example"), "{}", page.body);
    assert!(
        page.body.contains("Body Weight</a>: 71.5 kg"),
        "{}",
        page.body
    );
    let page = browser.get("record/Observation/w2").await;
    assert!(page.body.contains("signature verified"), "{}", page.body);
    assert!(page.body.contains("LOINC 29463-7"), "{}", page.body);
    assert!(page.body.contains("2024-06-10 09:00"), "{}", page.body);
    assert!(page.body.contains("Raw FHIR"));
    let page = browser
        .get("charts/chart?code=http%3A%2F%2Floinc.org%7C29463-7")
        .await;
    assert!(page.body.contains("<svg class=\"chart\""), "{}", page.body);
    let page = browser.get("export/download?format=bundle").await;
    assert!(
        page.body.contains("\"type\": \"collection\""),
        "{}",
        page.body
    );
    assert_eq!(
        browser.get("record/Observation/nope").await.status,
        StatusCode::NOT_FOUND
    );

    // Lock: the record's pages send to the unlock page until the passphrase is given again.
    let page = browser.post("lock", &[("csrf", &csrf)]).await;
    assert_eq!(page.location, "/unlock");
    assert_eq!(browser.get("dashboard").await.location, "/unlock");
    let page = browser
        .post(
            "unlock",
            &[("csrf", &csrf), ("passphrase", "wrong passphrase")],
        )
        .await;
    assert!(
        page.body.contains("not this vault&#39;s passphrase")
            || page.body.contains("not this vault's passphrase"),
        "{}",
        page.body
    );
    let page = browser
        .post("unlock", &[("csrf", &csrf), ("passphrase", PASSPHRASE)])
        .await;
    assert_eq!(page.location, "/");
    assert_eq!(browser.get("dashboard").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_session_locks() {
    let dir = tempfile::tempdir().unwrap();
    let url = start(dir.path(), Duration::from_secs(2)).await;
    let mut browser = Browser::new(&url);
    onboard(&mut browser).await;
    assert_eq!(browser.get("dashboard").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(browser.get("dashboard").await.location, "/unlock");
    let page = browser.get("unlock").await;
    assert!(
        page.body.contains("Locked after a while without activity"),
        "{}",
        page.body
    );
}
