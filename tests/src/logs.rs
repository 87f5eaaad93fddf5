//! Log output captured in memory, for tests that read what a subscriber
//! printed (`tracing_subscriber::fmt().with_writer(logs.clone())`).

use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

/// Captured log output, shared by its clones.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// What was written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("log output is UTF-8")
    }

    /// Forgets what was written so far.
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}
