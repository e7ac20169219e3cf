//! moto's S3 server, for the writers that race on an S3 lake.

use std::process::Command;

use crate::harness::{free_port, wait_for_port, Server};

/// moto's S3 server (PyPI `moto[server]`), in memory, for concurrent
/// writers: its conditional puts are atomic, which Delta commits rely on.
/// s3s-fs 0.14.1 lets 2–8 of 8 concurrent `If-None-Match: *` puts of one
/// key succeed, so racing commits on it overwrite each other.
pub struct MotoS3 {
    pub endpoint: String,
    port: u16,
    _server: Server,
}

impl MotoS3 {
    pub fn start(buckets: &[&str]) -> Self {
        let port = free_port();
        let server = Server(
            Command::new("python3")
                .args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start moto's S3 server (pip install 'moto[server]')"),
        );
        wait_for_port(port);
        let moto = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            _server: server,
        };
        for bucket in buckets {
            moto.http("PUT", &format!("/{bucket}"));
        }
        moto
    }

    pub fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "moto"),
            ("AWS_SECRET_ACCESS_KEY", "moto-secret"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
        ]
    }

    /// Keys under `prefix` in `bucket` (moto serves unsigned requests).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let body = self.http("GET", &format!("/{bucket}?list-type=2&prefix={prefix}"));
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect()
    }

    fn http(&self, method: &str, path: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(
            response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
            "{method} {path}: {response}"
        );
        response
    }
}
