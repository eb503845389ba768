//! The interactive `eddy sql` shell on a real terminal: `script` (util-linux) runs it on a
//! pseudo-terminal and the test types into it — arrow keys, Backspace, Ctrl-R, Ctrl-C, Ctrl-D —
//! waiting for each answer and prompt before the next keys (keys typed ahead would meet the
//! terminal still in cooked mode). History outlives the session in its file.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use eddy_tests::broker::{BrokerProcess, eddy_binary};

const UP: &str = "\x1b[A";
const LEFT: &str = "\x1b[D";
const BACKSPACE: &str = "\x7f";
const CTRL_C: &str = "\x03";
const CTRL_D: &str = "\x04";
const CTRL_R: &str = "\x12";
const ENTER: &str = "\r";

/// Longest wait for one answer.
const LIMIT: Duration = Duration::from_secs(60);

/// The output so far, and whether it has ended (the shell left).
type Shown = (Vec<u8>, bool);

/// `eddy sql` on a pseudo-terminal, and what it has shown so far.
struct Terminal {
    child: Child,
    keys: ChildStdin,
    shown: Arc<(Mutex<Shown>, Condvar)>,
    /// How far the output has been read by `expect`.
    seen: usize,
}

impl Terminal {
    fn open(broker: &BrokerProcess, history: &Path) -> Terminal {
        let command = format!("{} --broker {} sql", eddy_binary().display(), broker.addr());
        let mut child = Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .env("TERM", "xterm")
            .env("EDDY_SQL_HISTORY", history)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("`script` (util-linux) runs the shell on a pseudo-terminal");
        let keys = child.stdin.take().unwrap();
        let mut out = child.stdout.take().unwrap();
        let shown = Arc::new((Mutex::new((Vec::new(), false)), Condvar::new()));
        let sink = shown.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = out.read(&mut buf).unwrap_or(0);
                let (lock, ready) = &*sink;
                let mut shown = lock.lock().unwrap();
                shown.0.extend_from_slice(&buf[..n]);
                shown.1 = n == 0;
                ready.notify_all();
                if n == 0 {
                    return;
                }
            }
        });
        Terminal { child, keys, shown, seen: 0 }
    }

    fn type_keys(&mut self, keys: &str) {
        self.keys.write_all(keys.as_bytes()).unwrap();
        self.keys.flush().unwrap();
    }

    /// Waits until `text` shows after what earlier calls saw; moves past it.
    fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + LIMIT;
        let (lock, ready) = &*self.shown;
        let mut shown = lock.lock().unwrap();
        loop {
            let after = &shown.0[self.seen.min(shown.0.len())..];
            if let Some(at) = after.windows(text.len()).position(|w| w == text.as_bytes()) {
                self.seen += at + text.len();
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{text:?} did not show within {LIMIT:?}; after the last answer:\n{}",
                String::from_utf8_lossy(after)
            );
            shown = ready.wait_timeout(shown, left).unwrap().0;
        }
    }

    /// What showed since the last `expect`, up to `text` (which it then waits for).
    fn until(&mut self, text: &str) -> String {
        let from = self.seen;
        self.expect(text);
        let shown = self.shown.0.lock().unwrap();
        String::from_utf8_lossy(&shown.0[from..self.seen]).into_owned()
    }

    /// Runs one statement typed as `keys` (ending with Enter): waits for the answer's `marker`
    /// and the next prompt; returns what showed.
    fn run(&mut self, keys: &str, marker: &str) -> String {
        self.type_keys(keys);
        let answer = self.until(marker);
        self.expect("eddy> ");
        answer
    }

    /// Ctrl-D: the shell leaves (its output ends) and exits 0.
    fn close(mut self) {
        self.type_keys(CTRL_D);
        let deadline = Instant::now() + LIMIT;
        {
            let (lock, ready) = &*self.shown;
            let mut shown = lock.lock().unwrap();
            while !shown.1 {
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "the shell did not leave on Ctrl-D");
                shown = ready.wait_timeout(shown, left).unwrap().0;
            }
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the shell left with {status}");
    }
}

#[test]
fn the_shell_edits_lines_recalls_statements_and_keeps_history_across_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let history = dir.path().join("history");

    let mut term = Terminal::open(&broker, &history);
    term.expect("eddy> ");
    term.run("CREATE STREAM s1 (a INT) WITH (kafka_topic='t1');\r", "declared STREAM S1");
    // A statement over two lines: the second prompt says it continues.
    term.type_keys("CREATE STREAM s2 (b VARCHAR)\r");
    term.expect("   -> ");
    term.run("WITH (kafka_topic='t2');\r", "declared STREAM S2 over topic t2");
    // Backspace, and the cursor moved left to insert before the `;`.
    let streams = term.run(&format!("SHOW STREAMX{BACKSPACE}S;{ENTER}"), "| S2 ");
    assert!(streams.contains("| S1 "), "{streams}");
    let tables = format!("SHOW TABLE;{LEFT}S{ENTER}");
    let answer = term.run(&tables, "| name ");
    assert!(!answer.contains("error"), "{answer}");
    // Ctrl-C drops a half-typed statement; the next one runs alone.
    term.type_keys("SHOW nonsense\r");
    term.expect("   -> ");
    term.type_keys(CTRL_C);
    term.expect("eddy> ");
    let described = term.run("DESCRIBE s2;\r", "VARCHAR");
    assert!(described.contains("| B "), "{described}");
    // Up, Up: the statement before the last, run again.
    let again = term.run(&format!("{UP}{UP}{ENTER}"), "| name ");
    assert!(!again.contains("error"), "{again}");
    term.close();

    let kept = std::fs::read_to_string(&history).unwrap();
    let entries: Vec<&str> = kept.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        entries,
        [
            "CREATE STREAM s1 (a INT) WITH (kafka_topic='t1');",
            "CREATE STREAM s2 (b VARCHAR) WITH (kafka_topic='t2');",
            "SHOW STREAMS;",
            "SHOW TABLES;",
            "DESCRIBE s2;",
            "SHOW TABLES;",
        ],
        "{kept}"
    );

    // A new session starts with that history: Up x5 is the multi-line statement, whole.
    let mut term = Terminal::open(&broker, &history);
    term.expect("eddy> ");
    let recalled = term.run(&format!("{}{ENTER}", UP.repeat(5)), "already exists");
    assert!(recalled.contains("S2"), "{recalled}");
    // Ctrl-R searches back through the history; Enter runs what it found.
    let found = term.run(&format!("{CTRL_R}DESCR{ENTER}"), "VARCHAR");
    assert!(found.contains("| B "), "{found}");
    term.type_keys("history\r");
    let listed = term.until("DESCRIBE s2;");
    assert!(
        listed.contains("2  CREATE STREAM s2 (b VARCHAR) WITH (kafka_topic='t2');"),
        "{listed}"
    );
    term.expect("eddy> ");
    term.close();
}
