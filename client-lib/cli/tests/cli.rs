//! The `samenop` binary itself against a real server (in this process, on
//! loopback over mutual TLS, with the demo network): the demo's story step
//! by step, the commands as people and scripts use them, an exit code for
//! each class of failure, `watch` across a server restart, reads and sends
//! tried again while the server is away, completions and the manual page.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use samenop_tests::{TestServer, within};
use serde_json::Value;
use tempfile::TempDir;

const BINARY: &str = env!("CARGO_BIN_EXE_samenop");

/// The demo network's server, and profiles for its people.
struct Setup {
    server: TestServer,
    /// The profile file and the devices' state (XDG_DATA_HOME).
    dir: TempDir,
    /// Every field name the JSON documents printed so far carried.
    fields: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

/// Adds the field names in `value`, at any depth, to `fields`.
fn field_names(value: &Value, fields: &mut std::collections::BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                fields.insert(key.clone());
                field_names(inner, fields);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| field_names(v, fields)),
        _ => {}
    }
}

impl Setup {
    async fn new() -> Setup {
        let server = TestServer::start_demo().await;
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup {
            server,
            dir,
            fields: std::sync::Mutex::default(),
        };
        let pki = setup.server.pki.dir.display().to_string();
        let imported = setup
            .run(None, &["profile", "import-dev", "--pki", &pki])
            .await;
        assert!(
            imported.status.success(),
            "{}",
            String::from_utf8_lossy(&imported.stderr)
        );
        setup
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    fn command(&self, profile: Option<&str>, args: &[&str]) -> Command {
        let mut command = Command::new(BINARY);
        command
            .arg("--config")
            .arg(self.config())
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env("NO_COLOR", "1")
            .env_remove("SAMENOP_PROFILE");
        if let Some(profile) = profile {
            command.args(["--profile", profile]);
        }
        command.args(args);
        command
    }

    /// Runs `samenop` as `profile` and waits for it.
    async fn run(&self, profile: Option<&str>, args: &[&str]) -> Output {
        let mut command = self.command(profile, args);
        within(
            &format!("samenop {}", args.join(" ")),
            tokio::task::spawn_blocking(move || command.output().unwrap()),
        )
        .await
        .unwrap()
    }

    /// An anonymous child-abuse request Sanne opened to the pool, asking
    /// `question`; its id.
    async fn pool_request(&self, question: &str) -> String {
        let pool = self
            .json(
                SANNE,
                &[
                    "open",
                    "--anonymous",
                    "--expertise",
                    "child-abuse",
                    "--question",
                    question,
                ],
            )
            .await;
        pool["id"].as_str().unwrap().to_owned()
    }

    /// An anonymous child-abuse consult Sanne opened to the pool and Eva
    /// accepted; its id.
    async fn accepted_pool_consult(&self) -> String {
        let consult = self.pool_request("Wat is normaal?").await;
        self.json(EVA, &["accept", &consult]).await;
        consult
    }

    /// Runs `samenop --json` as `profile`; its one JSON document, after
    /// checking it succeeded.
    async fn json(&self, profile: &str, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend(args);
        let output = self.run(Some(profile), &all).await;
        assert!(
            output.status.success(),
            "samenop {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        let value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
        field_names(&value, &mut self.fields.lock().unwrap());
        value
    }
}

const SANNE: &str = "wijkteam-oost/sanne";
const EVA: &str = "veilig-thuis/eva";
const NOOR: &str = "veilig-thuis/noor";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_tells_the_story_step_by_step_and_plays_again() {
    let s = Setup::new().await;
    let endpoint = s.server.endpoint();
    let pki = s.server.pki.dir.display().to_string();
    let mut families = Vec::new();
    for _ in 0..2 {
        let story = s
            .json(SANNE, &["demo", "--server", &endpoint, "--pki", &pki])
            .await;
        let steps = story["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 9, "{story}");
        let said = |n: usize| steps[n - 1]["then"].to_string();
        assert!(said(1).contains("on record"));
        assert!(said(2).contains("recorded"));
        // The 9-year-old cannot consent on her own.
        assert!(
            steps[2]["refused"].as_str().unwrap().contains("under 12"),
            "{story}"
        );
        assert!(said(4).contains("waits in the pool"));
        assert!(said(5).contains("pool request") && said(5).contains("veiligheidsplan"));
        // The child specialist reads only what followed her joining.
        assert!(said(6).contains("1 message(s)") && said(6).contains("Samenvatting"));
        // The revoked consent suspends the consult, and a post is refused.
        assert!(said(7).contains("suspended"));
        assert!(
            steps[6]["refused"].as_str().unwrap().contains("suspended"),
            "{story}"
        );
        assert!(said(8).contains("closed (joint approach)"));
        assert!(said(9).contains("the trail verifies"), "{story}");
        families.push(story["family_id"].clone());
    }
    assert_ne!(families[0], families[1], "a new family each time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_work_through_it_and_scripts_read_it() {
    let s = Setup::new().await;
    let me = s.json(SANNE, &["whoami"]).await;
    assert_eq!(me["name"], "Sanne Contact");

    let family = s
        .json(
            SANNE,
            &[
                "family",
                "register",
                "--member",
                "parent:16+",
                "--member",
                "child:under-12",
            ],
        )
        .await;
    let family_id = family["id"].as_str().unwrap().to_owned();
    let short = &family_id[..8];
    assert_eq!(family["members"][1]["age_band"], "under_12");
    // What the profile keeps (here the ids it saw; its device's keys
    // later) is its owner's only, from the first file on.
    let state = s
        .dir
        .path()
        .join("data/samenop/devices/wijkteam-oost_sanne");
    let mode = |path: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&state), 0o700);
    for file in std::fs::read_dir(&state).unwrap() {
        let file = file.unwrap().path();
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    let consent = s
        .json(
            SANNE,
            &[
                "consent",
                "record",
                short,
                "--concerned",
                "2",
                "--given-by",
                "1",
                "--expertise",
                "child-abuse",
                "--evidence",
                "gesprek",
            ],
        )
        .await;
    let consent_id = consent["id"].as_str().unwrap().to_owned();
    let opened = s
        .json(
            SANNE,
            &[
                "open",
                "--family",
                short,
                "--concerned",
                "2",
                "--consent",
                &consent_id,
                "--expertise",
                "child-abuse",
                "--question",
                "Zijn dit signalen van mishandeling?",
                "--urgency",
                "acute",
            ],
        )
        .await;
    let consult = opened["id"].as_str().unwrap().to_owned();
    assert_eq!(opened["state"], "requested");

    // The specialist sees it in her inbox, by a short id too.
    let inbox = s.json(EVA, &["inbox"]).await;
    assert!(
        inbox["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == consult.as_str())
    );
    let people = s.run(Some(EVA), &["inbox"]).await;
    let table = String::from_utf8_lossy(&people.stdout);
    assert!(
        table.contains("1 request waiting") && table.contains("TIME LEFT"),
        "{table}"
    );
    assert!(
        table.contains("in 3 h"),
        "acute: four hours to accept, {table}"
    );
    s.json(EVA, &["accept", &consult[..13]]).await;

    // The thread, end to end encrypted, with a file.
    s.json(
        SANNE,
        &["send", &consult, "De school meldt blauwe plekken."],
    )
    .await;
    let file = s.dir.path().join("verslag.txt");
    std::fs::write(&file, "verslag van de school").unwrap();
    let file_arg = file.display().to_string();
    s.json(
        EVA,
        &["send", &consult, "Het protocol", "--file", &file_arg],
    )
    .await;
    let read = s.json(SANNE, &["read", &consult]).await;
    let messages = read["messages"].as_array().unwrap();
    let texts: Vec<&str> = messages
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["De school meldt blauwe plekken.", "Het protocol"]);
    let attachment = messages[1]["attachments"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let saved = s.dir.path().join("ontvangen.txt");
    let saved_arg = saved.display().to_string();
    s.json(
        SANNE,
        &["download", &consult, &attachment[..13], "--out", &saved_arg],
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(&saved).unwrap(),
        "verslag van de school"
    );
    let shown = s.run(Some(EVA), &["read", &consult]).await;
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("Sanne Contact") && shown.contains("(you)"),
        "{shown}"
    );

    // An exit code for each class of failure, with words to act on.
    let code = |output: &Output| output.status.code().unwrap();
    let unknown = uuid::Uuid::now_v7().to_string();
    let not_found = s.run(Some(EVA), &["show", &unknown]).await;
    assert_eq!(
        code(&not_found),
        3,
        "{}",
        String::from_utf8_lossy(&not_found.stderr)
    );
    let usage = s.run(Some(EVA), &["show", "01a2"]).await;
    assert_eq!(code(&usage), 2);
    let young = s
        .run(
            Some(SANNE),
            &[
                "consent",
                "record",
                short,
                "--concerned",
                "2",
                "--given-by",
                "2",
                "--expertise",
                "child-abuse",
                "--evidence",
                "x",
            ],
        )
        .await;
    assert_eq!(code(&young), 5);
    let words = String::from_utf8_lossy(&young.stderr);
    assert!(
        words.contains("under 12") && words.contains("a parent or carer consents"),
        "{words}"
    );
    let not_allowed = s.run(Some(NOOR), &["audit", "verify"]).await;
    assert_eq!(
        code(&not_allowed),
        4,
        "{}",
        String::from_utf8_lossy(&not_allowed.stderr)
    );
    let invalid = s
        .run(
            Some(SANNE),
            &[
                "open",
                "--family",
                short,
                "--concerned",
                "2",
                "--ground",
                "veilig-thuis-report",
                "--justification",
                "te kort",
                "--expertise",
                "child-abuse",
                "--question",
                "?",
            ],
        )
        .await;
    assert_eq!(
        code(&invalid),
        8,
        "{}",
        String::from_utf8_lossy(&invalid.stderr)
    );
    let missing = s.run(Some("nobody/here"), &["whoami"]).await;
    assert_eq!(code(&missing), 9);
    // Two child specialists, one pool request: the second is told it is
    // taken.
    let pool = s
        .json(
            SANNE,
            &[
                "open",
                "--anonymous",
                "--expertise",
                "child",
                "--question",
                "Wie kijkt mee?",
            ],
        )
        .await;
    let pool = pool["id"].as_str().unwrap().to_owned();
    s.json("jeugdbescherming/mila", &["accept", &pool]).await;
    let taken = s
        .run(Some("jeugdbescherming/ruben"), &["accept", &pool])
        .await;
    assert_eq!(
        code(&taken),
        6,
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    let errors: Value = {
        let out = s.run(Some(EVA), &["--json", "show", &unknown]).await;
        serde_json::from_slice(&out.stderr).unwrap()
    };
    assert_eq!(errors["error"]["class"], "not_found");
    assert_eq!(errors["error"]["exit_code"], 3);

    // Scripts read the listings too.
    let consults = s.json(SANNE, &["consults", "--state", "accepted"]).await;
    assert!(
        consults["consults"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] == "accepted")
    );
    let trail = s
        .json(
            "wijkteam-oost/ilse",
            &["audit", "query", "--family", &family_id],
        )
        .await;
    assert!(!trail["events"].as_array().unwrap().is_empty());
    s.json("wijkteam-oost/ilse", &["audit", "verify"]).await;
    s.json(SANNE, &["report"]).await;
    s.json(EVA, &["whoami"]).await;
    s.json(EVA, &["device", "list"]).await;

    // Every field name printed is documented under --help.
    let help = s.run(None, &["--help"]).await;
    let help = String::from_utf8_lossy(&help.stdout);
    let words: std::collections::BTreeSet<&str> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    let fields = s.fields.lock().unwrap().clone();
    assert!(fields.len() > 40, "{fields:?}");
    let undocumented: Vec<&String> = fields
        .iter()
        .filter(|f| !words.contains(f.as_str()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "fields missing from --help: {undocumented:?}"
    );
}

/// A `samenop --json watch` process and its output lines.
struct Watch {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Watch {
    fn start(s: &Setup, profile: &str) -> Watch {
        let mut child = s
            .command(Some(profile), &["--json", "watch"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watch { child, lines }
    }

    /// The next message the watch shows.
    async fn message(&self) -> Value {
        loop {
            let line = within("watch to show a message", async {
                loop {
                    if let Ok(line) = self.lines.try_recv() {
                        return line;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            let value: Value = serde_json::from_str(&line).unwrap();
            if value["kind"] == "message" {
                return value;
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_goes_on_across_a_server_restart_without_loss_or_repeat() {
    let mut s = Setup::new().await;
    let consult = s.accepted_pool_consult().await;
    s.json(SANNE, &["send", &consult, "een"]).await;
    let watch = Watch::start(&s, EVA);
    assert_eq!(watch.message().await["message"]["text"], "een");

    s.server.restart().await;
    s.json(SANNE, &["send", &consult, "twee"]).await;
    let next = watch.message().await;
    assert_eq!(
        next["message"]["text"], "twee",
        "the next, not a repeat: {next}"
    );
    s.json(SANNE, &["send", &consult, "drie"]).await;
    assert_eq!(watch.message().await["message"]["text"], "drie");
    drop(watch);

    // A new watch goes on from where the last one stopped.
    s.json(SANNE, &["send", &consult, "vier"]).await;
    let again = Watch::start(&s, EVA);
    assert_eq!(again.message().await["message"]["text"], "vier");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_tried_again_where_safe_and_reported_when_it_stays() {
    let mut s = Setup::new().await;
    let consult = s.accepted_pool_consult().await;
    // Until the owner's device adds hers, Eva's device cannot write; she is
    // told why and when to try again.
    let early = s.run(Some(EVA), &["send", &consult, "nul"]).await;
    let said = String::from_utf8_lossy(&early.stderr);
    assert_eq!(early.status.code(), Some(5), "{said}");
    assert!(said.contains("not in the consult's thread yet"), "{said}");
    let first = s.json(SANNE, &["send", &consult, "een"]).await;
    let first = first["sequence"].as_u64().unwrap();

    // A server that stays away: a read tries a few times, saying so, then
    // exits with the unavailable code and what to check.
    s.server.stop().await;
    let away = s.run(Some(EVA), &["inbox"]).await;
    let said = String::from_utf8_lossy(&away.stderr);
    assert_eq!(away.status.code(), Some(7), "{said}");
    assert!(said.contains("trying again"), "{said}");
    assert!(said.contains("is the server running"), "{said}");

    // A server back within the retries: a send and a read that started
    // while it was away both succeed, the message stored once.
    let spawn = |profile: &str, args: &[&str]| {
        let mut command = s.command(Some(profile), args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command.spawn().unwrap()
    };
    let send = spawn(SANNE, &["--json", "send", &consult, "twee"]);
    let read = spawn(EVA, &["--json", "read", &consult]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    s.server.launch().await;
    let finish = |child: Child| async move {
        within(
            "samenop to finish",
            tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()),
        )
        .await
        .unwrap()
    };
    let sent = finish(send).await;
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let sent: Value = serde_json::from_slice(&sent.stdout).unwrap();
    assert_eq!(sent["sequence"].as_u64(), Some(first + 1), "{sent}");
    let read = finish(read).await;
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let thread = s.json(EVA, &["read", &consult]).await;
    let texts: Vec<&str> = thread["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["een", "twee"], "{thread}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_the_manual_page_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(BINARY)
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .args(args)
            .output()
            .unwrap()
    };
    for (shell, mark) in [
        ("bash", "_samenop"),
        ("zsh", "#compdef samenop"),
        ("fish", "complete -c samenop"),
    ] {
        let out = run(&["completions", shell]);
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(mark),
            "{shell}"
        );
    }
    let man = run(&["man"]);
    assert!(String::from_utf8_lossy(&man.stdout).contains(".TH samenop"));
    let help = run(&["send", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("Example"));
    let wrong = run(&["send"]);
    assert_eq!(wrong.status.code(), Some(2));
}

/// One HTTP/1.1 exchange with the inbox's local server over a real socket:
/// the status, the header lines (lower-cased names) and the body.
async fn http(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or_default());
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    within("the inbox server to answer", stream.read_to_end(&mut raw))
        .await
        .unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A `samenop inbox --web` process: its address and launch token.
struct Inbox {
    child: Child,
    host: String,
    token: String,
}

impl Inbox {
    async fn start(s: &Setup, profile: &str) -> Inbox {
        let mut child = s
            .command(Some(profile), &["inbox", "--web"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let first = within(
            "the inbox to print its address",
            tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                BufReader::new(stdout).read_line(&mut line).unwrap();
                line
            }),
        )
        .await
        .unwrap();
        let rest = first.trim().strip_prefix("http://").unwrap().to_owned();
        let (host, query) = rest.split_once("/launch?token=").unwrap();
        Inbox {
            child,
            host: host.to_owned(),
            token: query.to_owned(),
        }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.host)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_inbox_answers_only_its_own_page_and_carries_a_consult_through() {
    let s = Setup::new().await;
    let web = Inbox::start(&s, EVA).await;
    let host = web.host.as_str();
    let origin = web.origin();
    let launch = format!("/launch?token={}", web.token);

    // Nothing without the session; no session for a wrong token or a
    // foreign name for this address (DNS rebinding).
    let (status, headers, _) = http(host, "GET", "/api/inbox", &[("Host", host)], None).await;
    assert_eq!(status, 401);
    let csp = header(&headers, "content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(header(&headers, "access-control-allow-origin").is_none());
    let wrong = http(host, "GET", "/launch?token=00", &[("Host", host)], None).await;
    assert_eq!(wrong.0, 403);
    let port = host.rsplit(':').next().unwrap();
    let rebound = format!("attacker.example:{port}");
    let foreign = http(host, "GET", &launch, &[("Host", &rebound)], None).await;
    assert_eq!(foreign.0, 421, "a foreign Host is refused");

    // The token is exchanged once for an HttpOnly, SameSite=Strict cookie,
    // and the browser is sent on without it.
    let (status, headers, _) = http(host, "GET", &launch, &[("Host", host)], None).await;
    assert_eq!(status, 303);
    assert_eq!(header(&headers, "location"), Some("/"));
    let cookie = header(&headers, "set-cookie").unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let again = http(host, "GET", &launch, &[("Host", host)], None).await;
    assert_eq!(again.0, 403, "a launch token is used once");

    let (status, headers, page) = http(
        host,
        "GET",
        "/",
        &[("Host", host), ("Cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<script type=\"module\" src=\"/app.js\">"),
        "{page}"
    );
    assert!(!page.contains("<script>"), "no inline script");
    assert!(header(&headers, "content-security-policy").is_some());
    let rebound_with_cookie = http(
        host,
        "GET",
        "/api/inbox",
        &[("Host", &format!("localhost:{port}")), ("Cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(rebound_with_cookie.0, 421);
    let (status, _, session) = http(
        host,
        "GET",
        "/api/session",
        &[("Host", host), ("Cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let session: Value = serde_json::from_str(&session).unwrap();
    let csrf = session["csrf"].as_str().unwrap().to_owned();

    // A change needs the page's origin and its CSRF token.
    // (Available: away would take Eva out of the pool the request below
    // goes to.)
    let available = Some(r#"{"availability":"available"}"#);
    let base = [("Host", host), ("Cookie", cookie.as_str())];
    let with = |extra: &[(&'static str, &str)]| -> Vec<(&str, String)> {
        base.iter()
            .map(|(n, v)| (*n, (*v).to_owned()))
            .chain(extra.iter().map(|(n, v)| (*n, (*v).to_owned())))
            .collect()
    };
    for (what, extra, expect) in [
        ("no CSRF token", with(&[("Origin", &origin)]), 403),
        (
            "a cross-origin POST",
            with(&[
                ("Origin", "http://attacker.example"),
                ("X-CSRF-Token", &csrf),
            ]),
            403,
        ),
        ("no Origin", with(&[("X-CSRF-Token", &csrf)]), 403),
        (
            "a cross-site fetch",
            with(&[
                ("Origin", &origin),
                ("X-CSRF-Token", &csrf),
                ("Sec-Fetch-Site", "cross-site"),
            ]),
            403,
        ),
        (
            "the page itself",
            with(&[("Origin", &origin), ("X-CSRF-Token", &csrf)]),
            200,
        ),
    ] {
        let headers: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, _, body) = http(host, "PUT", "/api/availability", &headers, available).await;
        assert_eq!(status, expect, "{what}: {body}");
    }
    let no_cookie = http(
        host,
        "PUT",
        "/api/availability",
        &[("Host", host), ("Origin", &origin), ("X-CSRF-Token", &csrf)],
        available,
    )
    .await;
    assert_eq!(no_cookie.0, 401, "a change without the cookie");

    // The live stream, then a request arriving in Eva's pool.
    let events = {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
        stream
            .write_all(
                format!("GET /events HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        rx
    };
    let mut events = events;
    let mut next_event = async |kind: &str| -> String {
        within("the page's event stream to tell", async {
            loop {
                let line = events.recv().await.unwrap();
                if line == format!("event: {kind}") {
                    let data = events.recv().await.unwrap();
                    return data.trim_start_matches("data: ").to_owned();
                }
            }
        })
        .await
    };
    let consult = s.pool_request("Hoe veilig is het thuis?").await;
    assert_eq!(next_event("consult").await, consult);
    let (status, _, inbox) = http(host, "GET", "/api/inbox", &base, None).await;
    assert_eq!(status, 200);
    let inbox: Value = serde_json::from_str(&inbox).unwrap();
    let listed = &inbox["requests"][0];
    assert_eq!(listed["id"], consult.as_str(), "{inbox}");
    assert_eq!(listed["question"], "Hoe veilig is het thuis?");
    assert_eq!(listed["addressed_to"], "pool");
    // Who asks, by name and organisation; never the family.
    assert_eq!(listed["owner_name"], "Sanne Contact", "{inbox}");
    assert_eq!(listed["asking_organisation"], "Wijkteam Demostad-Oost");
    assert!(listed["family_id"].is_null(), "{inbox}");

    // Eva accepts in the page; Sanne writes; the page reads it decrypted.
    let change = [
        ("Host", host),
        ("Cookie", cookie.as_str()),
        ("Origin", origin.as_str()),
        ("X-CSRF-Token", csrf.as_str()),
    ];
    let path = format!("/api/consults/{consult}");
    let (status, _, body) = http(host, "POST", &format!("{path}/accept"), &change, None).await;
    assert_eq!(status, 200, "{body}");
    s.json(SANNE, &["send", &consult, "Moeder meldt dreiging."])
        .await;
    assert_eq!(next_event("thread").await, consult);
    let (status, _, shown) = http(host, "GET", &path, &base, None).await;
    assert_eq!(status, 200, "{shown}");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["consult"]["state"], "accepted");
    assert_eq!(
        shown["messages"][0]["text"], "Moeder meldt dreiging.",
        "{shown}"
    );

    // Eva answers from the page; Sanne reads the answer decrypted.
    let (status, _, body) = http(
        host,
        "POST",
        &format!("{path}/messages"),
        &change,
        Some(r#"{"text":"Ik bel haar vandaag."}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let read = s.json(SANNE, &["read", &consult]).await;
    let texts: Vec<&str> = read["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert!(texts.contains(&"Ik bel haar vandaag."), "{read}");

    // Closing and inviting are the owner's: Eva's page is refused, and the
    // consult stays as it was.
    for (action, body) in [
        ("close", r#"{"outcome":"advice-given"}"#),
        (
            "invite",
            r#"{"specialist":"0a9e1f4e-8c3b-4f7a-9d2e-5b6c7d8e9f01","expertise":"child"}"#,
        ),
    ] {
        let (status, _, said) = http(
            host,
            "POST",
            &format!("{path}/{action}"),
            &change,
            Some(body),
        )
        .await;
        assert_eq!(status, 403, "{action}: {said}");
    }
    let (status, _, body) = http(
        host,
        "POST",
        &format!("{path}/close"),
        &change,
        Some(r#"{"outcome":"solved"}"#),
    )
    .await;
    assert_eq!(
        (status, body.contains("not an outcome")),
        (400, true),
        "{body}"
    );
    let after = s.json(SANNE, &["show", &consult]).await;
    assert_eq!(after["state"], "accepted", "{after}");

    // The consult vocabulary is the command line's, served as a module.
    let (status, headers, words) = http(host, "GET", "/words.js", &base, None).await;
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v.contains("text/javascript")),
        "{headers:?}"
    );
    assert!(
        words.starts_with("// The consult vocabulary") && words.contains("\"partnergeweld\""),
        "{words}"
    );
}

/// The web inbox in real headless Chromium (`tests/browser/run.sh`: Playwright
/// and axe-core from npm, the machine's Chromium). Without Node.js, npm or
/// Chromium it is skipped with one line saying what is missing, unless
/// SAMENOP_REQUIRE_BROWSER=1 (CI), which makes that a failure.
#[test]
fn the_web_inbox_in_headless_chromium() {
    use std::io::Write;
    let found = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let chromium = std::env::var_os("SAMENOP_CHROMIUM").is_some() || found("chromium");
    let missing: Vec<&str> = [
        ("node", found("node")),
        ("npm", found("npm")),
        ("chromium", chromium),
    ]
    .into_iter()
    .filter(|(_, there)| !there)
    .map(|(tool, _)| tool)
    .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var("SAMENOP_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "the browser tests need {}",
            missing.join(", ")
        );
        // Straight to the terminal: the test harness keeps what print! says.
        let _ = writeln!(
            std::io::stderr(),
            "browser tests skipped: no {} (apt-get install chromium nodejs npm)",
            missing.join(", ")
        );
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/run.sh");
    let output = Command::new("bash").arg(&script).output().unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
