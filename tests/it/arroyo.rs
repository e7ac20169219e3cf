//! `docstream arroyo deploy` against a local server that records the request.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::thread;

use serde_json::Value;

use crate::harness::{docstream, ok, repo};

/// Answers one request with `status` and `reply`; returns the request's
/// first line, headers and body.
fn record_one(
    status: u16,
    reply: &'static str,
) -> (String, thread::JoinHandle<(String, String, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let mut headers = String::new();
        let mut length = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            headers.push_str(&h.to_ascii_lowercase());
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
            reply.len()
        )
        .unwrap();
        (line, headers, serde_json::from_slice(&body).unwrap())
    });
    (url, handle)
}

/// Each Delta sink in the query: table name → (path, [(column, SQL type)]).
fn delta_sinks(query: &str) -> BTreeMap<String, (String, Vec<(String, String)>)> {
    let mut sinks = BTreeMap::new();
    for statement in query.split(';') {
        let Some(at) = statement.find("CREATE TABLE ") else {
            continue;
        };
        let rest = &statement[at + 13..];
        if !rest.contains("connector = 'delta'") {
            continue;
        }
        let name = rest.split_whitespace().next().unwrap().to_string();
        let columns = &rest[rest.find('(').unwrap() + 1..rest.find(") WITH").unwrap()];
        let columns = columns
            .split(",\n")
            .map(|c| {
                let mut words = c.split_whitespace();
                (
                    words.next().unwrap().to_string(),
                    words.next().unwrap().to_string(),
                )
            })
            .collect();
        let path = rest.split("path = '").nth(1).unwrap();
        let path = path[..path.find('\'').unwrap()].to_string();
        sinks.insert(name, (path, columns));
    }
    sinks
}

/// The Arroyo SQL type of a contract column (schemas/tables/*.schema.json).
fn arroyo_type(property: &Value) -> String {
    let ty = match &property["type"] {
        Value::Array(types) => types.iter().find(|t| *t != "null").unwrap().clone(),
        t => t.clone(),
    };
    match (ty.as_str().unwrap(), property["format"].as_str()) {
        ("string", Some("date-time")) => "TIMESTAMP".into(),
        ("string", Some("date")) => "DATE".into(),
        ("string", _) => "TEXT".into(),
        ("integer", Some("int32")) => "INT".into(),
        ("integer", _) => "BIGINT".into(),
        ("number", _) => "DOUBLE".into(),
        ("array", _) => match property["items"]["type"].as_str().unwrap() {
            "number" => "FLOAT[]".into(),
            _ => "TEXT[]".into(),
        },
        (other, _) => panic!("no Arroyo type for {other}"),
    }
}

#[test]
fn deploy_posts_the_query_and_every_udf_in_arroyos_shape() {
    let (url, server) = record_one(200, r#"{"id":"pl_test123","name":"docstream"}"#);
    let out = ok(docstream()
        .args(["arroyo", "deploy", "--api", &url, "--parallelism", "3"])
        .args(["--brokers", "kafka:9092", "--lake", "s3://docstream/lake/"])
        .args(["--storage-option", "aws_endpoint=http://minio:9000"])
        .output()
        .unwrap());
    assert!(out.contains("pl_test123"), "{out}");
    let (line, headers, body) = server.join().unwrap();
    assert_eq!(line.trim_end(), "POST /api/v1/pipelines HTTP/1.1");
    assert!(
        headers.contains("content-type: application/json"),
        "{headers}"
    );

    // {name, query, udfs: [{definition, language: "rust"}], parallelism}
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["name", "parallelism", "query", "udfs"]);
    assert_eq!(body["parallelism"], 3);
    assert!(body["name"].as_str().is_some_and(|n| !n.is_empty()));
    let query = body["query"].as_str().unwrap();
    assert!(!query.contains("${"), "every placeholder filled");
    assert!(query.contains("bootstrap_servers = 'kafka:9092'"));
    assert!(query.contains("'storage.aws_endpoint' = 'http://minio:9000'"));

    let udfs = body["udfs"].as_array().unwrap();
    let mut names = Vec::new();
    for udf in udfs {
        assert_eq!(udf["language"], "rust");
        let definition = udf["definition"].as_str().unwrap();
        let name = definition
            .split("fn ")
            .nth(1)
            .unwrap()
            .split('(')
            .next()
            .unwrap();
        let file = repo().join(format!("udfs/arroyo/{name}/{name}.rs"));
        assert_eq!(
            definition,
            std::fs::read_to_string(&file).unwrap(),
            "{name}: the checked-in single file"
        );
        assert!(
            query.contains(&format!("{name}(")),
            "the query calls {name}"
        );
        names.push(name.to_string());
    }
    names.sort();
    assert_eq!(
        names,
        [
            "chunk_text",
            "count_tokens",
            "embed",
            "extract_action_items",
            "extract_risks",
            "redact_pii",
            "summarize",
        ]
    );

    // Same paths and columns as docstream's contract.
    let sinks = delta_sinks(query);
    let tables: Vec<&String> = sinks.keys().collect();
    assert_eq!(
        tables,
        [
            "action_items",
            "chunks",
            "documents",
            "embeddings",
            "risks",
            "summaries"
        ]
    );
    for (table, (path, columns)) in &sinks {
        assert_eq!(path, &format!("s3://docstream/lake/{table}"));
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(repo().join(format!("schemas/tables/{table}.schema.json")))
                .unwrap(),
        )
        .unwrap();
        let properties = schema["properties"].as_object().unwrap();
        let sent: Vec<&String> = columns.iter().map(|(c, _)| c).collect();
        let contract: Vec<&String> = properties.keys().collect();
        let (mut a, mut b) = (sent, contract);
        a.sort();
        b.sort();
        assert_eq!(a, b, "{table}: the contract's columns");
        for (column, ty) in columns {
            assert_eq!(ty, &arroyo_type(&properties[column]), "{table}.{column}");
        }
    }
}

#[test]
fn a_refused_deploy_says_why_and_fails() {
    let (url, server) = record_one(400, r#"{"error":"UDF embed failed to compile"}"#);
    let out = docstream()
        .args(["arroyo", "deploy", "--api", &url, "--lake", "s3://b/lake"])
        .output()
        .unwrap();
    server.join().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP 400") && err.contains("failed to compile"),
        "{err}"
    );
    assert!(err.contains("DOCSTREAM_UDFS"), "says what to check: {err}");

    let out = docstream()
        .args(["arroyo", "deploy", "--storage-option", "nokey", "--dry-run"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEY=VALUE"));
}
