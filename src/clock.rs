//! The wall clock in milliseconds since the Unix epoch: the one time source
//! of decisions, ledgers and logs (a fixture or a seed fixes its own).

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
