//! Shows the progress of long statements: a progress bar per training on a terminal,
//! `NOTICE:` lines on stderr otherwise (as psql prints a server's notices).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::engine::Progress;

/// Consumes `reports` until the statement ends.
pub async fn report(mut reports: UnboundedReceiver<Progress>) {
    let terminal = std::io::stderr().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    while let Some(progress) = reports.recv().await {
        match (&progress, terminal) {
            (Progress::Epoch { model, report }, true) => {
                let bar = bar.get_or_insert_with(|| {
                    let bar = ProgressBar::new(report.epochs as u64);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix} [{bar:30}] epoch {pos}/{len} {msg} ({elapsed}, at most ~{eta} left)",
                        )
                        .expect("the template is valid")
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(format!("training {model}"));
                    bar
                });
                bar.set_position(report.epoch as u64);
                bar.set_message(match report.validation_auc {
                    Some(auc) => format!(
                        "loss {:.4}, validation auc {auc:.4}",
                        report.validation_loss
                    ),
                    None => format!("loss {:.4}", report.validation_loss),
                });
            }
            (Progress::Message(message), true) => match &bar {
                Some(bar) => bar.println(message),
                None => eprintln!("{message}"),
            },
            (progress, false) => eprintln!("NOTICE:  {progress}"),
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}
