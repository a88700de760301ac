//! Progress on anything slow: a spinner on a terminal, one line per stage otherwise, nothing
//! under `--json` (where stdout must hold only the JSON).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    started: std::time::Instant,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .expect("a valid template"),
            );
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        Progress {
            bar,
            quiet,
            started: std::time::Instant::now(),
        }
    }

    /// A stage reached: printed once, kept on screen.
    pub fn stage(&self, line: &str) {
        self.mark('✓', line);
    }

    /// A stage that went wrong: like [`Progress::stage`], marked ✗.
    pub fn fail(&self, line: &str) {
        self.mark('✗', line);
    }

    /// Something the user should act on (the escrow running low), marked `!`; printed even
    /// where stages are not (only `--json` silences it, which reports it its own way).
    pub fn warn(&self, line: &str) {
        self.mark('!', line);
    }

    /// A line kept on screen, marked and timed since the start.
    fn mark(&self, mark: char, line: &str) {
        if self.quiet {
            return;
        }
        let t = self.started.elapsed().as_secs_f64();
        let line = format!("{mark} {t:>6.2}s  {line}");
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// A line of the job's own output (its log), on stdout, with the spinner kept out of it.
    pub fn print_out(&self, line: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    /// What is happening now (spinner text only).
    pub fn status(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_message(msg.to_owned());
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
