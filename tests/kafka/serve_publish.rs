//! `serve --brokers --topic`: uploads published for `ingest` workers, which
//! land them; the server follows each job in the lake.

use std::process::{Command, Stdio};

use crate::broker::*;
use crate::harness::*;

/// curl with `args`; the status and the body.
fn curl(args: &[&str]) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status.trim().parse().unwrap_or(0), json)
}

#[test]
fn serve_publishes_uploads_that_ingest_workers_land() {
    let broker = Broker::start();
    broker.create_topic("uploads", 2);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    // Workers may read what the server stages under the lake.
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    let pipeline = dir.path().join("pipelines/workers.toml");
    let default = std::fs::read_to_string(repo().join("pipelines/default.toml")).unwrap();
    let staged = lake.join("_uploads");
    let allowed = format!("allowed_objects = [\"{}\"]", staged.display());
    let workers = default.replace("# allowed_objects = [\"s3://inbox/\"]", &allowed);
    assert_ne!(
        workers, default,
        "the default pipeline's [kafka] section moved"
    );
    std::fs::write(&pipeline, workers).unwrap();
    std::os::unix::fs::symlink(repo().join("sql"), dir.path().join("sql")).unwrap();
    let pipeline = pipeline.to_str().unwrap();
    let mut args = vec!["--pipeline", pipeline, "--batch-age", "0.5"];
    args.extend(["-X", "session.timeout.ms=3000"]);
    let worker = ingest(&broker, "uploads", &lake, &args);

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _server = Server(
        docstream()
            .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--lake"])
            .arg(&lake)
            .args(["--brokers", &broker.addr, "--topic", "uploads"])
            .args(SPINE)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port);

    // A text file travels inline; a PDF is staged for the workers.
    let mut jobs = Vec::new();
    for name in ["project-atlas-status.md", "data-migration-plan.pdf"] {
        let file = format!("file=@{}", repo().join("samples").join(name).display());
        let (status, body) = curl(&["-F", &file, &format!("{base}/v1/documents")]);
        assert_eq!(status, 202, "{name}: {body}");
        jobs.push((name, body["job_id"].as_str().unwrap().to_string()));
    }
    for (name, job) in &jobs {
        let mut last = serde_json::Value::Null;
        wait_until(90, &format!("{name} to land"), || {
            last = curl(&[&format!("{base}/v1/jobs/{job}")]).1;
            last["state"] == "landed" || last["state"] == "failed"
        });
        assert_eq!(last["state"], "landed", "{name}: {last}");
        // Its SSE stream, followed now, ends at once with the landed job.
        let (status, _) = curl(&[
            "-N",
            "--max-time",
            "10",
            &format!("{base}/v1/jobs/{job}/events"),
        ]);
        assert_eq!(status, 200);
    }
    let lake_str = lake.to_str().unwrap();
    let docs = query(
        lake_str,
        "SELECT source_uri, count(*) AS n FROM documents GROUP BY source_uri ORDER BY source_uri",
        &[],
    );
    assert_eq!(
        docs,
        vec![
            serde_json::json!({"source_uri": "upload://default/data-migration-plan.pdf", "n": 1}),
            serde_json::json!({"source_uri": "upload://default/project-atlas-status.md", "n": 1}),
        ]
    );
    assert!(count(lake_str, "SELECT count(*) FROM chunks") >= 2);
    // Staged files go once their versions landed, with their folders.
    wait_until(10, "the staged PDF to be removed", || {
        walk(&staged).is_empty()
    });

    // The server's own queries see what the workers landed.
    let (status, listed) = curl(&[&format!("{base}/v1/documents")]);
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["documents"].as_array().unwrap().len(), 2, "{listed}");

    // Erasure goes to the workers as a delete event.
    let pdf_doc = query(
        lake_str,
        "SELECT doc_id FROM documents WHERE source_uri LIKE '%.pdf'",
        &[],
    )[0]["doc_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = curl(&["-X", "DELETE", &format!("{base}/v1/documents/{pdf_doc}")]);
    assert_eq!(status, 202, "{body}");
    wait_until(60, "the delete event to erase the PDF", || {
        count(lake_str, "SELECT count(*) FROM documents") == 1
    });
    // The server sees the workers' erasure too.
    wait_until(20, "the server to list one document", || {
        let listed = curl(&[&format!("{base}/v1/documents")]).1;
        listed["documents"].as_array().map(Vec::len) == Some(1)
    });
    terminate(worker);
}

/// Every path under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        out.extend(walk(&p));
        out.push(p);
    }
    out
}
