//! [`FileEventLog`]: the audit trail as an append-only file of JSON lines, for embedded mode.
//!
//! Each event is one line written with a single `write` on a file opened for appending, so
//! lines never interleave and a crash can at worst leave one torn last line, which readers
//! skip. Queries scan the file; that suits one node's trail, not a fleet's (use MongoDB there).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex as StdMutex;

use tokio::sync::{broadcast, Mutex};

use crate::audit::{AuditEvent, EventLog, EventLogError, EventQuery, FEED_CAPACITY};

/// Ids appended recently, remembered so the same event is not written twice.
const RECENT_IDS: usize = 4096;

pub struct FileEventLog {
    path: PathBuf,
    write: Mutex<()>,
    recent: StdMutex<(HashSet<String>, std::collections::VecDeque<String>)>,
    feed: broadcast::Sender<AuditEvent>,
}

impl FileEventLog {
    /// A log on `path`; the file is created on the first append.
    pub fn new(path: impl Into<PathBuf>) -> FileEventLog {
        FileEventLog {
            path: path.into(),
            write: Mutex::new(()),
            recent: StdMutex::new(Default::default()),
            feed: broadcast::channel(FEED_CAPACITY).0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `id` as appended; false if it already was.
    fn remember(&self, id: &str) -> bool {
        let mut guard = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (set, order) = &mut *guard;
        if !set.insert(id.to_owned()) {
            return false;
        }
        order.push_back(id.to_owned());
        if order.len() > RECENT_IDS {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        true
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> EventLogError {
        EventLogError::Unavailable(format!("{}: {e}", self.path.display()))
    }
}

#[async_trait::async_trait]
impl EventLog for FileEventLog {
    async fn append(&self, event: AuditEvent) -> Result<(), EventLogError> {
        if !self.remember(&event.id) {
            return Ok(());
        }
        let mut line = serde_json::to_vec(&event).map_err(|e| self.unavailable(e))?;
        line.push(b'\n');
        let _guard = self.write.lock().await;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut line = line;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&path)?;
            // A crash may have left a torn last line; start a fresh one rather than glue this
            // event onto it, where readers would skip both.
            let len = file.metadata()?.len();
            let mut last = [0u8; 1];
            if len > 0 && file.read_at(&mut last, len - 1)? == 1 && last[0] != b'\n' {
                line.insert(0, b'\n');
            }
            file.write_all(&line)
        })
        .await
        .map_err(|e| self.unavailable(e))?
        .map_err(|e| self.unavailable(e))?;
        let _ = self.feed.send(event);
        Ok(())
    }

    async fn query(&self, query: &EventQuery) -> Result<Vec<AuditEvent>, EventLogError> {
        let path = self.path.clone();
        let query = query.clone();
        let limit = query.effective_limit();
        tokio::task::spawn_blocking(move || {
            let file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut found: Vec<AuditEvent> = BufReader::new(file)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| serde_json::from_str::<AuditEvent>(&line).ok())
                .filter(|event| query.matches(event))
                .filter(|event| query.before.as_ref().is_none_or(|b| &event.id < b))
                .collect();
            found.sort_by(|a, b| b.id.cmp(&a.id));
            found.truncate(limit);
            Ok(found)
        })
        .await
        .map_err(|e| self.unavailable(e))?
        .map_err(|e| self.unavailable(e))
    }

    fn subscribe(&self) -> broadcast::Receiver<AuditEvent> {
        self.feed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditKind;

    fn event(at: u64, resource: &str) -> AuditEvent {
        let mut event = AuditEvent::new(AuditKind::Claimed, at, resource);
        event.resource = Some(resource.into());
        event.user = Some("alice".into());
        event
    }

    #[tokio::test]
    async fn queries_are_newest_first_filtered_and_paged() {
        let dir = tempfile::tempdir().unwrap();
        let log = FileEventLog::new(dir.path().join("events.jsonl"));
        for at in 1..=5 {
            log.append(event(at, if at % 2 == 0 { "doc:2" } else { "doc:1" }))
                .await
                .unwrap();
        }
        let all = log.query(&EventQuery::default()).await.unwrap();
        assert_eq!(
            all.iter().map(|e| e.at).collect::<Vec<_>>(),
            vec![5, 4, 3, 2, 1]
        );
        let page = log
            .query(&EventQuery {
                resource: Some("doc:1".into()),
                limit: Some(1),
                ..EventQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].at, 5);
        let next = log
            .query(&EventQuery {
                resource: Some("doc:1".into()),
                before: Some(page[0].id.clone()),
                ..EventQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(next.iter().map(|e| e.at).collect::<Vec<_>>(), vec![3, 1]);
    }

    #[tokio::test]
    async fn the_same_event_is_stored_once_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let log = FileEventLog::new(&path);
        let mut feed = log.subscribe();
        log.append(event(1, "doc:1")).await.unwrap();
        log.append(event(1, "doc:1")).await.unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\":\"torn")
            .unwrap();
        assert_eq!(log.query(&EventQuery::default()).await.unwrap().len(), 1);
        log.append(event(2, "doc:1")).await.unwrap();
        let all = log.query(&EventQuery::default()).await.unwrap();
        assert_eq!(all.iter().map(|e| e.at).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(feed.recv().await.unwrap().at, 1);
        assert_eq!(feed.recv().await.unwrap().at, 2);
        assert!(feed.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_log_without_a_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let log = FileEventLog::new(dir.path().join("none.jsonl"));
        assert!(log.query(&EventQuery::default()).await.unwrap().is_empty());
    }
}
