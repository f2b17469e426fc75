//! The watch stream: newline-delimited JSON events from a `?watch=true` response, decoded one at a time.
//!
//! Decoding is a pure function of one line ([`decode_event`]), so every event shape — including the `ERROR`
//! event that carries a 410 `Status` inside an HTTP 200 stream, and bookmarks that hold nothing but a
//! resourceVersion — is unit-tested without a server.

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::Error;

/// How often the API server sends an idle watch a BOOKMARK (kube-apiserver's watch cache, `bookmarkFrequency`:
/// one minute; measured on 1.34.4: an idle watch with `allowWatchBookmarks` got them 60.4–60.8 s apart).
const WATCH_BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

/// A watch that received no byte for this long is treated as dead: the bookmark interval plus a margin for
/// a loaded API server. A connection silenced without FIN or RST is noticed this long after its last byte.
pub(crate) const WATCH_IDLE_DEADLINE: Duration =
    Duration::from_secs(WATCH_BOOKMARK_INTERVAL.as_secs() + 15);

/// A single watch event longer than this is refused rather than buffered without bound.
const MAX_EVENT_BYTES: usize = 16 << 20;

/// One event of a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent<K> {
    Added(K),
    Modified(K),
    Deleted(K),
    /// Nothing changed; the stream has progressed to this resourceVersion.
    Bookmark {
        resource_version: String,
    },
    /// The server ended the watch with this error, typically 410 Gone ("too old resource version").
    Error(Error),
}

/// Decodes one line of a watch stream.
pub(crate) fn decode_event<K: DeserializeOwned>(line: &[u8]) -> Result<WatchEvent<K>, Error> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(rename = "type")]
        type_: String,
        object: serde_json::Value,
    }
    let raw: Raw =
        serde_json::from_slice(line).map_err(|e| Error::Decode(format!("watch event: {e}")))?;
    let object = || {
        serde_json::from_value::<K>(raw.object.clone())
            .map_err(|e| Error::Decode(format!("watch {} object: {e}", raw.type_)))
    };
    match raw.type_.as_str() {
        "ADDED" => Ok(WatchEvent::Added(object()?)),
        "MODIFIED" => Ok(WatchEvent::Modified(object()?)),
        "DELETED" => Ok(WatchEvent::Deleted(object()?)),
        "BOOKMARK" => {
            let resource_version = raw
                .object
                .pointer("/metadata/resourceVersion")
                .and_then(|v| v.as_str())
                .ok_or_else(|| {
                    Error::Decode("watch bookmark without metadata.resourceVersion".into())
                })?
                .to_string();
            Ok(WatchEvent::Bookmark { resource_version })
        }
        "ERROR" => Ok(WatchEvent::Error(Error::from_status_object(&raw.object))),
        other => Err(Error::Decode(format!("unknown watch event type {other:?}"))),
    }
}

/// An open watch. [`WatchStream::next_event`] blocks until the next event or the end of the stream.
pub struct WatchStream<K> {
    reader: BufReader<Box<dyn Read + Send>>,
    line: Vec<u8>,
    _kind: std::marker::PhantomData<fn() -> K>,
}

impl<K: DeserializeOwned> WatchStream<K> {
    pub(crate) fn new(reader: Box<dyn Read + Send>) -> Self {
        WatchStream {
            reader: BufReader::with_capacity(64 * 1024, reader),
            line: Vec::new(),
            _kind: std::marker::PhantomData,
        }
    }

    /// The next event; `Ok(None)` when the server ended the stream cleanly (its timeout).
    pub fn next_event(&mut self) -> Result<Option<WatchEvent<K>>, Error> {
        loop {
            self.line.clear();
            let read = (&mut self.reader)
                .take(MAX_EVENT_BYTES as u64 + 1)
                .read_until(b'\n', &mut self.line)
                .map_err(
                    |e| match e.get_ref().and_then(|e| e.downcast_ref::<ureq::Error>()) {
                        Some(ureq::Error::Timeout(ureq::Timeout::PerRead)) => {
                            Error::Silent(WATCH_IDLE_DEADLINE)
                        }
                        _ => Error::Transport(format!("watch stream: {e}")),
                    },
                )?;
            if read == 0 {
                return Ok(None);
            }
            if self.line.len() > MAX_EVENT_BYTES {
                return Err(Error::Decode(format!(
                    "watch event larger than {MAX_EVENT_BYTES} bytes"
                )));
            }
            if !self.line.ends_with(b"\n") {
                return Err(Error::Transport(
                    "watch stream ended in the middle of an event".into(),
                ));
            }
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return decode_event(&self.line).map(Some);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::error::Reason;
    use crate::kube::types::PartialObject;

    fn stream(text: &str) -> WatchStream<PartialObject> {
        WatchStream::new(Box::new(std::io::Cursor::new(text.as_bytes().to_vec())))
    }

    #[test]
    fn decodes_each_event_type() {
        let mut s = stream(concat!(
            r#"{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"1"}}}"#,
            "\n",
            "\n",
            r#"{"type":"MODIFIED","object":{"metadata":{"name":"a","resourceVersion":"2"}}}"#,
            "\n",
            r#"{"type":"BOOKMARK","object":{"kind":"Secret","apiVersion":"v1","metadata":{"resourceVersion":"3"}}}"#,
            "\n",
            r#"{"type":"DELETED","object":{"metadata":{"name":"a","resourceVersion":"4"}}}"#,
            "\n",
            r#"{"type":"ERROR","object":{"kind":"Status","status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}"#,
            "\n",
        ));
        assert!(matches!(s.next_event(), Ok(Some(WatchEvent::Added(o))) if o.metadata.name == "a"));
        assert!(
            matches!(s.next_event(), Ok(Some(WatchEvent::Modified(o))) if o.metadata.resource_version == "2")
        );
        assert_eq!(
            s.next_event().unwrap(),
            Some(WatchEvent::Bookmark {
                resource_version: "3".into()
            })
        );
        assert!(matches!(s.next_event(), Ok(Some(WatchEvent::Deleted(_)))));
        match s.next_event() {
            Ok(Some(WatchEvent::Error(e))) => {
                assert!(e.is(Reason::Gone));
                assert!(e.to_string().contains("too old resource version"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.next_event().unwrap(), None);
    }

    #[test]
    fn a_cut_stream_is_a_transport_error_not_a_silent_end() {
        let mut s = stream(r#"{"type":"ADDED","object":{"metadata":{"na"#);
        assert!(matches!(s.next_event(), Err(Error::Transport(_))));
    }

    #[test]
    fn a_read_past_the_idle_deadline_is_a_silent_connection_and_other_failures_are_transport() {
        struct Failing(Option<std::io::Error>);
        impl std::io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(self.0.take().expect("read once"))
            }
        }
        let failing = |error| WatchStream::<PartialObject>::new(Box::new(Failing(Some(error))));
        let timeout = std::io::Error::other(ureq::Error::Timeout(ureq::Timeout::PerRead));
        let error = failing(timeout).next_event().unwrap_err();
        assert_eq!(error, Error::Silent(WATCH_IDLE_DEADLINE));
        assert!(error.to_string().contains("not even a bookmark"), "{error}");
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(
            failing(reset).next_event(),
            Err(Error::Transport(_))
        ));
    }

    #[test]
    fn malformed_events_are_decode_errors() {
        for line in [
            &b"not json\n"[..],
            b"{\"type\":\"WHAT\",\"object\":{}}\n",
            b"{\"type\":\"BOOKMARK\",\"object\":{}}\n",
        ] {
            let mut s =
                WatchStream::<PartialObject>::new(Box::new(std::io::Cursor::new(line.to_vec())));
            assert!(
                matches!(s.next_event(), Err(Error::Decode(_))),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
