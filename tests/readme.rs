//! The README's copies of documentation that lives elsewhere stay copies:
//! a change to one without the other fails here.

use std::path::Path;

/// The rows of the first markdown table in `text`.
fn table_rows(text: &str) -> Vec<&str> {
    text.lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .collect()
}

#[test]
fn the_readme_metrics_table_is_the_one_session_kit_telemetry_documents() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let documented = std::fs::read_to_string(root.join("session-core/src/telemetry/metrics.md"))
        .expect("the metrics table's source");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("the README");
    let rows = table_rows(&documented);
    assert!(rows.len() > 3, "metrics.md has no table: {documented}");
    let start = readme
        .find(rows[2])
        .expect("the README has the metrics table's first metric row");
    let header = readme[..start]
        .rfind(rows[0])
        .expect("the README's metrics table has the documented header");
    let in_readme = table_rows(&readme[header..]);
    assert_eq!(
        in_readme, rows,
        "the README's metrics table differs from session-core/src/telemetry/metrics.md; copy it over"
    );
}
