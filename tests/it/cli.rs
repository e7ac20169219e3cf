//! The command line refuses out-of-range values with a usage error (never a
//! panic) and does not print secrets from the environment.

use crate::harness::*;

fn refused(args: &[&str]) -> String {
    let out = docstream().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    stderr
}

#[test]
fn out_of_range_values_are_usage_errors() {
    let err = refused(&["vacuum", "--retain-hours", "9999999999999999"]);
    assert!(err.contains("--retain-hours"), "{err}");
    #[cfg(feature = "kafka")]
    for args in [
        ["ingest", "--exit-when-idle=-1"],
        ["ingest", "--exit-when-idle=inf"],
        ["ingest", "--batch-age=nan"],
        ["watch", "--interval=inf"],
    ] {
        let err = refused(&args);
        assert!(err.contains("seconds"), "{args:?}: {err}");
    }
}

#[test]
fn help_hides_environment_values() {
    let out = docstream()
        .arg("--help")
        .env(
            "AWS_ENDPOINT_URL",
            "http://admin:s3cr3t-value@127.0.0.1:9000",
        )
        .env("DOCSTREAM_PIPELINE", "/secret/path/pipeline.toml")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(help.contains("AWS_ENDPOINT_URL"), "{help}");
    assert!(!help.contains("s3cr3t-value"), "{help}");
    assert!(!help.contains("/secret/path"), "{help}");
}
