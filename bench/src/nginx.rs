//! nginx as the upstream (serving the site's files) and as a proxy baseline. Each runs in the
//! foreground as a child with its own prefix directory, so nothing outside the run's temp dir
//! is read or written, and it listens on loopback only.

use std::path::Path;
use std::process::Command;

use crate::process::{Cpus, Proc};
use crate::BenchError;

/// What an nginx child serves.
pub enum Role<'a> {
    /// Files under `root`.
    Files { root: &'a Path },
    /// A reverse proxy to the upstream on `upstream_port`, with pooled upstream connections.
    Proxy { upstream_port: u16 },
}

/// Temp-path directives for the modules this nginx was built with: the compiled-in defaults
/// point into /var/lib/nginx, which a run must not touch.
fn temp_paths(prefix: &Path) -> String {
    let built = Command::new("nginx")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    let mut lines = format!(
        "    client_body_temp_path {0}/body;\n    proxy_temp_path {0}/proxy;\n",
        prefix.display()
    );
    for module in ["fastcgi", "uwsgi", "scgi"] {
        if built.contains(&format!("--http-{module}-temp-path")) {
            lines.push_str(&format!(
                "    {module}_temp_path {}/{module};\n",
                prefix.display()
            ));
        }
    }
    lines
}

/// The whole configuration file for one nginx child.
pub fn config(prefix: &Path, port: u16, workers: usize, role: &Role<'_>) -> String {
    let server = match role {
        // `.shtml` pages go through SSI, which writes the per-request token of `site::FRESH`.
        // With one output buffer as large as the page, nginx sends it whole instead of in
        // pieces that wait on the client's delayed ACKs.
        Role::Files { root } => format!(
            "    server {{\n        listen 127.0.0.1:{port};\n        root {};\n        location / {{ }}\n\
             \x20       location ~ \\.shtml$ {{\n            ssi on;\n            output_buffers 1 128k;\n        }}\n    }}\n",
            root.display()
        ),
        Role::Proxy { upstream_port } => format!(
            "    upstream app {{\n        server 127.0.0.1:{upstream_port};\n        keepalive 128;\n    }}\n\
             \x20   server {{\n        listen 127.0.0.1:{port};\n        location / {{\n\
             \x20           proxy_pass http://app;\n            proxy_http_version 1.1;\n\
             \x20           proxy_set_header Connection \"\";\n        }}\n    }}\n"
        ),
    };
    format!(
        "daemon off;\nmaster_process on;\nworker_processes {workers};\n\
         pid {p}/nginx.pid;\nlock_file {p}/nginx.lock;\nerror_log {p}/error.log warn;\n\
         events {{\n    worker_connections 16384;\n}}\n\
         http {{\n    access_log off;\n    sendfile on;\n    tcp_nopush on;\n    tcp_nodelay on;\n\
         \x20   keepalive_requests 1000000;\n    keepalive_timeout 120s;\n\
         \x20   open_file_cache max=64 inactive=600s;\n\
         \x20   types {{\n        text/html html shtml;\n    }}\n    default_type application/octet-stream;\n\
         {temp}{server}}}\n",
        p = prefix.display(),
        temp = temp_paths(prefix),
    )
}

/// Writes the config into `prefix` and starts nginx on it.
pub fn start(
    name: &str,
    prefix: &Path,
    port: u16,
    workers: usize,
    role: &Role<'_>,
    cpus: &Cpus,
) -> Result<Proc, BenchError> {
    std::fs::create_dir_all(prefix).map_err(|e| BenchError::io(prefix.display().to_string(), e))?;
    let conf = prefix.join("nginx.conf");
    std::fs::write(&conf, config(prefix, port, workers, role))
        .map_err(|e| BenchError::io(conf.display().to_string(), e))?;
    let mut cmd = cpus.server_command("nginx");
    cmd.arg("-p").arg(prefix).arg("-c").arg(&conf);
    let mut proc = Proc::spawn(name, cmd, &prefix.join("stderr.log"))?;
    proc.wait_listening(&[port])?;
    Ok(proc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_config_pools_upstream_connections_on_loopback() {
        let conf = config(
            Path::new("/x"),
            8001,
            2,
            &Role::Proxy {
                upstream_port: 8000,
            },
        );
        assert!(conf.contains("listen 127.0.0.1:8001;"));
        assert!(conf.contains("server 127.0.0.1:8000;"));
        assert!(conf.contains("keepalive 128;"));
        assert!(conf.contains("proxy_set_header Connection \"\";"));
        assert!(conf.contains("daemon off;"));
        assert!(conf.contains("worker_processes 2;"));
    }

    #[test]
    fn files_config_serves_the_root() {
        let conf = config(
            Path::new("/x"),
            8000,
            1,
            &Role::Files {
                root: Path::new("/site"),
            },
        );
        assert!(conf.contains("root /site;"));
        assert!(conf.contains("location ~ \\.shtml$ {\n            ssi on;"));
        assert!(conf.contains("pid /x/nginx.pid;"));
        assert!(!conf.contains("proxy_pass"));
    }
}
