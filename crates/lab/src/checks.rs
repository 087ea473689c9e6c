//! What the lab checks, printed as it goes and summed up at the end.

/// The outcome of the lab's checks.
#[derive(Debug, Default)]
pub struct Report {
    failed: Vec<String>,
    passed: usize,
}

impl Report {
    /// Records and prints check `what`: `ok` tells whether the outcome was the expected one.
    pub fn check(&mut self, what: &str, ok: bool) {
        if ok {
            self.passed += 1;
            println!("  [ ok ] {what}");
        } else {
            self.failed.push(what.to_owned());
            println!("  [FAIL] {what}");
        }
    }

    /// Records and prints check `what` whose outcome is `result`; a failure also prints
    /// the error.
    pub fn check_result(&mut self, what: &str, result: anyhow::Result<()>) {
        let failure = result.err();
        self.check(what, failure.is_none());
        if let Some(e) = failure {
            for line in format!("{e:#}").lines() {
                println!("         {line}");
            }
        }
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failed.is_empty()
    }

    /// Prints the summary.
    pub fn print_summary(&self) {
        if self.failed.is_empty() {
            println!("\nAll {} checks passed.", self.passed);
        } else {
            println!(
                "\n{} of {} checks FAILED:",
                self.failed.len(),
                self.failed.len() + self.passed
            );
            for what in &self.failed {
                println!("  - {what}");
            }
        }
    }
}
