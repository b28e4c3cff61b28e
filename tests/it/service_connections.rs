//! Connections as an attacker holds them, through raw sockets: silent or
//! trickling clients are cut off by the header-read timeout (which is also the
//! keep-alive idle timeout), open connections are capped, `/health` answers
//! while idle sockets hold the cap, and a client that never finishes its
//! upload cannot keep a stopping server alive past `--shutdown-timeout-secs`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::test_app::spawn_app_with;

/// How long a connection may take to send a request head in these tests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);

async fn connect(app: &crate::test_app::TestApp) -> TcpStream {
    let addr = app.base.trim_start_matches("http://").to_string();
    TcpStream::connect(addr).await.unwrap()
}

/// Reads until the server closes the connection (EOF or reset); how long
/// that took, or `None` if it stayed open for `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let closed = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, closed)
        .await
        .ok()
        .map(|()| started.elapsed())
}

/// Reads one response head (up to the blank line); `None` if none came within `within`.
async fn response_head(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut head = Vec::new();
    let read = async {
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    (!head.is_empty()).then(|| String::from_utf8_lossy(&head).into_owned())
}

#[tokio::test]
async fn silent_trickling_and_idle_connections_are_closed() {
    let app = spawn_app_with(|c| c.header_timeout = HEADER_TIMEOUT).await;

    // Connects and sends nothing.
    let mut silent = connect(&app).await;
    let took = closed_within(&mut silent, Duration::from_secs(10)).await;
    let took = took.expect("a silent connection is closed");
    assert!(took >= HEADER_TIMEOUT / 2, "closed too early: {took:?}");

    // Sends a header byte every 200 ms: the whole head never arrives in time.
    let mut trickle = connect(&app).await;
    let started = Instant::now();
    let mut cut_off = false;
    for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 123456789\r\n\r\n" {
        if trickle.write_all(&[*byte]).await.is_err() {
            cut_off = true;
            break;
        }
        if closed_within(&mut trickle, Duration::from_millis(200))
            .await
            .is_some()
        {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "a trickled head is cut off");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A kept-alive connection that goes quiet after its answer.
    let mut idle = connect(&app).await;
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let head = response_head(&mut idle, Duration::from_secs(5)).await;
    assert!(head.unwrap_or_default().starts_with("HTTP/1.1 200"));
    let took = closed_within(&mut idle, Duration::from_secs(10)).await;
    assert!(took.is_some(), "an idle keep-alive connection is closed");
    app.stop().await;
}

#[tokio::test]
async fn open_connections_are_capped() {
    let app = spawn_app_with(|c| {
        c.header_timeout = Duration::from_secs(2);
        c.max_connections = 2;
    })
    .await;
    let _held = [connect(&app).await, connect(&app).await];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = connect(&app).await;
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        response_head(&mut third, Duration::from_millis(1000)).await,
        None,
        "a third connection waits while two are open"
    );
    // The two silent ones time out; then the third is served.
    let head = response_head(&mut third, Duration::from_secs(10)).await;
    assert!(head.unwrap_or_default().starts_with("HTTP/1.1 200"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_idle_sockets_hold_the_cap() {
    let app = spawn_app_with(|c| {
        c.header_timeout = HEADER_TIMEOUT;
        c.max_connections = 64;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(connect(&app).await);
    }
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let resp = client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(15));
    // Every idle socket was closed by the server.
    for stream in &mut idle {
        let took = closed_within(stream, Duration::from_secs(10)).await;
        assert!(took.is_some(), "an idle socket is still open");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_stalled_upload_cannot_hold_off_shutdown() {
    let app = spawn_app_with(|c| c.shutdown_timeout = Duration::from_secs(1)).await;
    let mut slow = connect(&app).await;
    slow.write_all(
        b"POST /datasets?format=jsonl HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n\
          {\"text\": \"a\", \"label\": 0}\n",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(20), app.stop()).await;
    assert!(stopped.is_ok(), "the server is still draining after 20 s");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    let cut = closed_within(&mut slow, Duration::from_secs(5)).await;
    assert!(cut.is_some(), "the stalled upload's connection is closed");
}
