//! A small W3C WebDriver client for end-to-end browser tests: Debian's headless Chromium
//! (`/usr/bin/chromium`) driven through `/usr/bin/chromedriver` on a loopback port.
//!
//! Every call is async and panics on failure with the WebDriver error, its message and the
//! page's current URL, which is what a failing test wants to show. Each command is one
//! HTTP/1.1 request on a fresh loopback connection, bounded by [`COMMAND_TIMEOUT`].
//!
//! ```ignore
//! let d = Driver::start(artifacts.join("login")).await;
//! d.goto(&format!("{issuer}/login")).await;
//! d.fill("input[name=username]", "alice").await;
//! d.click("button[type=submit]").await;
//! d.wait_url(|u| u.contains("/consent"), Duration::from_secs(10)).await;
//! d.screenshot("consent").await;
//! ```

#![allow(dead_code)] // each test uses a subset

use std::fmt;
use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request};
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C key under which an element reference is returned.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Upper bound for one WebDriver command, from connect to the end of the response body.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long chromedriver may take to answer `GET /status` with `ready: true`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Page loads and scripts are cut off by the browser before [`COMMAND_TIMEOUT`] is reached,
/// so a slow page yields a WebDriver error rather than a transport timeout.
const PAGE_LOAD_TIMEOUT_MS: u64 = 25_000;
const POLL: Duration = Duration::from_millis(100);

/// A failed WebDriver command: the W3C error code (or `transport`) and its message.
#[derive(Debug)]
struct WdError {
    error: String,
    message: String,
}

impl fmt::Display for WdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

fn transport(message: impl fmt::Display) -> WdError {
    WdError {
        error: "transport".into(),
        message: message.to_string(),
    }
}

/// Sends one JSON request to chromedriver and returns the `value` of its answer.
async fn request(
    port: u16,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, WdError> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(transport)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(transport)?;
        tokio::spawn(conn);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(path)
            // chromedriver refuses requests whose Host is not a loopback name.
            .header("host", format!("127.0.0.1:{port}"))
            .header("content-type", "application/json; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .map_err(transport)?;
        let resp = sender.send_request(req).await.map_err(transport)?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(transport)?
            .to_bytes();
        let mut json: Value = serde_json::from_slice(&bytes).map_err(|e| {
            transport(format!(
                "HTTP {status}, body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            ))
        })?;
        let value = json["value"].take();
        if status.is_success() {
            return Ok(value);
        }
        Err(WdError {
            error: value["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_string(),
            message: value["message"].as_str().unwrap_or_default().to_string(),
        })
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(transport(format!("no answer within {COMMAND_TIMEOUT:?}"))),
    }
}

/// A chromedriver port plus a session id: enough to send session commands. Cheap to clone,
/// so elements carry their own copy.
#[derive(Clone, Debug)]
struct Session {
    port: u16,
    id: String,
}

impl Session {
    /// Sends a command under `/session/{id}` and returns its value or the WebDriver error.
    async fn try_cmd(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WdError> {
        request(
            self.port,
            method,
            &format!("/session/{}{path}", self.id),
            body.as_ref(),
        )
        .await
    }

    /// Like [`Session::try_cmd`], but panics on error, naming `what` and the current URL.
    async fn cmd(&self, what: &str, method: Method, path: &str, body: Option<Value>) -> Value {
        match self.try_cmd(method, path, body).await {
            Ok(v) => v,
            Err(e) => self.fail(what, e).await,
        }
    }

    /// Panics with `what`, `detail` and the current URL; generic so it fits any match arm.
    async fn fail<T>(&self, what: &str, detail: impl fmt::Display) -> T {
        let url = match self.try_cmd(Method::GET, "/url", None).await {
            Ok(Value::String(u)) => u,
            Ok(other) => other.to_string(),
            Err(e) => format!("<unknown: {e}>"),
        };
        panic!("webdriver: {what} failed: {detail}\n  current URL: {url}");
    }

    fn element(&self, css: &str, value: &Value) -> Element {
        let id = value[ELEMENT_KEY].as_str().unwrap_or_else(|| {
            panic!("webdriver: element reference for {css:?} lacks {ELEMENT_KEY}: {value}")
        });
        Element {
            session: self.clone(),
            id: id.to_string(),
            css: css.to_string(),
        }
    }

    async fn try_find(&self, css: &str) -> Result<Option<Element>, WdError> {
        let locator = json!({"using": "css selector", "value": css});
        match self.try_cmd(Method::POST, "/element", Some(locator)).await {
            Ok(v) => Ok(Some(self.element(css, &v))),
            Err(e) if e.error == "no such element" => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A headless Chromium session behind its own chromedriver process. Dropping it ends the
/// session, kills chromedriver and removes the browser profile.
pub struct Driver {
    session: Session,
    chromedriver: Child,
    profile_dir: PathBuf,
    artifact_dir: PathBuf,
    screenshots: AtomicU32,
}

impl Driver {
    /// Starts chromedriver on a free loopback port and opens a Chromium session with a fresh
    /// profile that accepts self-signed certificates. Screenshots, and chromedriver's own
    /// output as `chromedriver.log`, go to `artifact_dir` (created if missing).
    pub async fn start(artifact_dir: PathBuf) -> Driver {
        std::fs::create_dir_all(&artifact_dir)
            .unwrap_or_else(|e| panic!("webdriver: cannot create {}: {e}", artifact_dir.display()));
        for bin in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(bin).exists(),
                "webdriver: {bin} is missing; install it with `apt-get install chromium chromium-driver`"
            );
        }
        // A port found free may be taken before chromedriver binds it (another test's
        // server): chromedriver then exits at once, and a new port is tried.
        for attempt in 1.. {
            match Driver::try_start(&artifact_dir).await {
                Ok(driver) => return driver,
                Err(log) if attempt < 3 => {
                    eprintln!("webdriver: chromedriver exited early, trying another port:\n{log}")
                }
                Err(log) => panic!("webdriver: chromedriver exited early three times:\n{log}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// One attempt of [`Driver::start`]; chromedriver's output when it exited early.
    async fn try_start(artifact_dir: &Path) -> Result<Driver, String> {
        let artifact_dir = artifact_dir.to_path_buf();
        let port = free_port();
        let profile_dir = fresh_profile_dir();
        let log_path = artifact_dir.join("chromedriver.log");
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("webdriver: cannot create {}: {e}", log_path.display()));
        let log_err = log
            .try_clone()
            .expect("webdriver: cannot duplicate the log file handle");
        let chromedriver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            // Its own process group, which Chromium joins, so Drop can end them all.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("webdriver: cannot spawn {CHROMEDRIVER}: {e}"));
        // From here on, Drop cleans up whatever happens.
        let mut driver = Driver {
            session: Session {
                port,
                id: String::new(),
            },
            chromedriver,
            profile_dir,
            artifact_dir,
            screenshots: AtomicU32::new(0),
        };
        driver.wait_ready(&log_path).await?;
        driver.session.id = driver.new_session().await;
        Ok(driver)
    }

    /// Waits for chromedriver to answer; its output when it exited instead.
    async fn wait_ready(&mut self, log_path: &Path) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.chromedriver.try_wait() {
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                return Err(format!("({status}) {log}"));
            }
            match request(self.session.port, Method::GET, "/status", None).await {
                Ok(v) if v["ready"] == true => return Ok(()),
                _ if Instant::now() >= deadline => {
                    panic!(
                        "webdriver: chromedriver not ready within {READY_TIMEOUT:?}; see {}",
                        log_path.display()
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    async fn new_session(&self) -> String {
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--user-data-dir={}", self.profile_dir.display()),
            "--window-size=1280,1000".into(),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "timeouts": {"pageLoad": PAGE_LOAD_TIMEOUT_MS, "script": PAGE_LOAD_TIMEOUT_MS},
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        match request(self.session.port, Method::POST, "/session", Some(&caps)).await {
            Ok(v) => match v["sessionId"].as_str() {
                Some(id) => id.to_string(),
                None => panic!("webdriver: new session answer lacks sessionId: {v}"),
            },
            Err(e) => panic!("webdriver: creating the Chromium session failed: {e}"),
        }
    }

    /// Navigates to `url` and waits for the page load to finish.
    pub async fn goto(&self, url: &str) {
        self.session
            .cmd(
                &format!("goto {url}"),
                Method::POST,
                "/url",
                Some(json!({"url": url})),
            )
            .await;
    }

    /// The current page's URL.
    pub async fn url(&self) -> String {
        let v = self.session.cmd("get URL", Method::GET, "/url", None).await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// The current page's `<title>`.
    pub async fn title(&self) -> String {
        let v = self
            .session
            .cmd("get title", Method::GET, "/title", None)
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// The current DOM serialized as HTML.
    pub async fn source(&self) -> String {
        let v = self
            .session
            .cmd("get page source", Method::GET, "/source", None)
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// The first element matching `css`; panics if there is none.
    pub async fn find(&self, css: &str) -> Element {
        match self.session.try_find(css).await {
            Ok(Some(el)) => el,
            Ok(None) => {
                self.session
                    .fail(&format!("find {css:?}"), "no such element")
                    .await
            }
            Err(e) => self.session.fail(&format!("find {css:?}"), e).await,
        }
    }

    /// The first element matching `css`, or `None`.
    pub async fn try_find(&self, css: &str) -> Option<Element> {
        match self.session.try_find(css).await {
            Ok(found) => found,
            Err(e) => self.session.fail(&format!("find {css:?}"), e).await,
        }
    }

    /// Every element matching `css`, in document order.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let locator = json!({"using": "css selector", "value": css});
        let v = self
            .session
            .cmd(
                &format!("find all {css:?}"),
                Method::POST,
                "/elements",
                Some(locator),
            )
            .await;
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| self.session.element(css, e))
            .collect()
    }

    /// The visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await
    }

    /// Finds the first element matching `css`, clears it and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear().await;
        el.send_keys(text).await;
    }

    /// Clicks the first element matching `css`. When the page replaces the element between
    /// finding and clicking it (a script re-rendered it, or a passkey offered by autofill
    /// submitted the form on its own), the click goes to the element found anew, or
    /// nowhere if the page has moved on without one.
    pub async fn click(&self, css: &str) {
        let mut el = self.find(css).await;
        for _ in 0..3 {
            match el.try_click().await {
                Ok(_) => return,
                Err(e) if e.error == "stale element reference" => match self.try_find(css).await {
                    Some(again) => el = again,
                    None => return,
                },
                Err(e) => self.session.fail(&format!("click on {css:?}"), e).await,
            }
        }
        self.session
            .fail(&format!("click on {css:?}"), "the element kept going stale")
            .await
    }

    /// Polls until an element matches `css` and returns it; panics after `timeout`.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(el) = self.try_find(css).await {
                return el;
            }
            if Instant::now() >= deadline {
                let what = format!("wait_for {css:?}");
                self.session
                    .fail::<()>(&what, format!("nothing matched within {timeout:?}"))
                    .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls until the current URL satisfies `pred` and returns it; panics after `timeout`.
    pub async fn wait_url(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let url = self.url().await;
            if pred(&url) {
                return url;
            }
            if Instant::now() >= deadline {
                panic!(
                    "webdriver: wait_url: no matching URL within {timeout:?}\n  current URL: {url}"
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs a Chrome DevTools Protocol command through chromedriver (device emulation:
    /// `Emulation.setEmulatedMedia`, `Emulation.setScriptExecutionDisabled`).
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.session
            .cmd(
                &format!("cdp {cmd}"),
                Method::POST,
                "/goog/cdp/execute",
                Some(json!({"cmd": cmd, "params": params})),
            )
            .await
    }

    /// Sets the browser window's outer size in CSS pixels.
    pub async fn resize(&self, width: u32, height: u32) {
        self.session
            .cmd(
                &format!("resize to {width}x{height}"),
                Method::POST,
                "/window/rect",
                Some(json!({"width": width, "height": height})),
            )
            .await;
    }

    /// Saves a PNG of the whole page (the window grows to the page's height for the shot,
    /// at most 8000 pixels, then returns to its size) as `<artifact_dir>/<NN>-<name>.png`,
    /// NN counting up from 01 for this driver, and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let size = self
            .execute(
                "return [window.outerWidth, window.outerHeight, window.outerHeight - window.innerHeight, document.documentElement.scrollHeight];",
                &[],
            )
            .await;
        let dim = |i: usize| size[i].as_u64().unwrap_or(0) as u32;
        let (width, height, chrome, page) = (dim(0), dim(1), dim(2), dim(3));
        let full = (page + chrome).min(8000);
        if full > height {
            self.resize(width, full).await;
        }
        let path = self.viewport_screenshot(name).await;
        if full > height {
            self.resize(width, height).await;
        }
        path
    }

    /// Saves a PNG of what the window shows now.
    pub async fn viewport_screenshot(&self, name: &str) -> PathBuf {
        let n = self.screenshots.fetch_add(1, Ordering::Relaxed) + 1;
        let path = self.artifact_dir.join(format!("{n:02}-{name}.png"));
        let v = self
            .session
            .cmd(
                &format!("screenshot {name:?}"),
                Method::GET,
                "/screenshot",
                None,
            )
            .await;
        let png = STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("webdriver: screenshot {name:?} is not base64: {e}"));
        std::fs::write(&path, png)
            .unwrap_or_else(|e| panic!("webdriver: cannot write {}: {e}", path.display()));
        path
    }

    /// Runs a synchronous script (`return ...;` yields the result) with `args` available as
    /// `arguments[i]`, and returns its result.
    pub async fn execute(&self, script: &str, args: &[Value]) -> Value {
        let body = json!({"script": script, "args": args});
        self.session
            .cmd("execute script", Method::POST, "/execute/sync", Some(body))
            .await
    }
}

impl Drop for Driver {
    /// Best-effort and bounded. Ending the session lets Chromium quit cleanly; killing the
    /// process group then catches whatever is left, since Chromium outlives a killed
    /// chromedriver.
    fn drop(&mut self) {
        if !self.session.id.is_empty() {
            delete_session_blocking(self.session.port, &self.session.id);
        }
        let group = self.chromedriver.id();
        let _ = Command::new("/bin/sh")
            .args(["-c", &format!("kill -s KILL -- -{group}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
        let _ = std::fs::remove_dir_all(&self.profile_dir);
    }
}

/// `DELETE /session/{id}` over a plain blocking socket, since Drop cannot await. Waits at
/// most a few seconds for the answer, which comes once the browser has quit.
fn delete_session_blocking(port: u16, id: &str) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut tcp) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return;
    };
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!(
        "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if tcp.write_all(req.as_bytes()).is_ok() {
        let _ = tcp.read(&mut [0u8; 512]);
    }
}

/// An element of the current page. It goes stale when the page changes.
#[derive(Debug)]
pub struct Element {
    session: Session,
    id: String,
    /// The selector it was found by, for error messages.
    css: String,
}

impl Element {
    async fn cmd(&self, action: &str, method: Method, path: &str, body: Option<Value>) -> Value {
        let what = format!("{action} on {:?}", self.css);
        self.session
            .cmd(&what, method, &format!("/element/{}{path}", self.id), body)
            .await
    }

    /// Like [`Element::click`], but returns the WebDriver error.
    async fn try_click(&self) -> Result<Value, WdError> {
        self.session
            .try_cmd(
                Method::POST,
                &format!("/element/{}/click", self.id),
                Some(json!({})),
            )
            .await
    }

    /// Scrolls the element into view and clicks its center.
    pub async fn click(&self) {
        self.cmd("click", Method::POST, "/click", Some(json!({})))
            .await;
    }

    /// Types `text` into the element, as keystrokes.
    pub async fn send_keys(&self, text: &str) {
        self.cmd(
            "send_keys",
            Method::POST,
            "/value",
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Empties an editable element.
    pub async fn clear(&self) {
        self.cmd("clear", Method::POST, "/clear", Some(json!({})))
            .await;
    }

    /// The element's rendered (visible) text.
    pub async fn text(&self) -> String {
        let v = self.cmd("get text", Method::GET, "/text", None).await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// The value of the HTML attribute `name` as written in the markup, if present.
    pub async fn attr(&self, name: &str) -> Option<String> {
        let v = self
            .cmd(
                &format!("get attribute {name:?}"),
                Method::GET,
                &format!("/attribute/{name}"),
                None,
            )
            .await;
        v.as_str().map(str::to_string)
    }

    /// The DOM property `name` (e.g. `value`, `checked`), `Null` if unset.
    pub async fn prop(&self, name: &str) -> Value {
        self.cmd(
            &format!("get property {name:?}"),
            Method::GET,
            &format!("/property/{name}"),
            None,
        )
        .await
    }

    /// Whether a checkbox, radio button or option is selected.
    pub async fn is_selected(&self) -> bool {
        self.cmd("is_selected", Method::GET, "/selected", None)
            .await
            == true
    }

    /// Whether the element is shown (chromedriver's visibility check: CSS display,
    /// visibility, size), whatever its attributes say.
    pub async fn is_displayed(&self) -> bool {
        self.cmd("is_displayed", Method::GET, "/displayed", None)
            .await
            == true
    }
}

fn free_port() -> u16 {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").expect("webdriver: cannot bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("webdriver: no local address")
        .port()
}

/// A new, empty directory for one browser profile, unique within the machine's temp dir.
fn fresh_profile_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("latchkey-chromium-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("webdriver: cannot create {}: {e}", dir.display()));
    dir
}
