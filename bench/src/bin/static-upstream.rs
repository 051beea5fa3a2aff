//! The benchmark upstream when nginx is not installed: every file under `--root` served from
//! memory, so the upstream costs as little as possible and never touches the disk mid-run. In
//! an `.shtml` file the request-id directive ([`bench::site::REQUEST_ID`]) becomes a new id on
//! every request, as nginx's SSI makes it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::Response;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Serves a directory from memory over plain HTTP/1.1 (benchmark upstream).")]
struct Args {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    root: PathBuf,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

struct File {
    content_type: &'static str,
    body: axum::body::Bytes,
    /// For an `.shtml` file: where the request id goes in `body`.
    request_id_at: Option<usize>,
}

/// Numbers the requests for `.shtml` files.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

type Files = Arc<HashMap<String, File>>;

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html" | "shtml") => "text/html; charset=utf-8",
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        _ => "application/octet-stream",
    }
}

fn load(root: &Path, dir: &Path, files: &mut HashMap<String, File>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            load(root, &path, files)?;
            continue;
        }
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        let url = format!("/{}", relative.to_string_lossy());
        let mut body = std::fs::read(&path)?;
        let request_id_at = if path.extension().is_some_and(|e| e == "shtml") {
            let directive = bench::site::REQUEST_ID.as_bytes();
            let at = body.windows(directive.len()).position(|w| w == directive);
            if let Some(at) = at {
                body.drain(at..at + directive.len());
            }
            at
        } else {
            None
        };
        files.insert(
            url,
            File {
                content_type: content_type(&path),
                body: body.into(),
                request_id_at,
            },
        );
    }
    Ok(())
}

async fn serve(State(files): State<Files>, uri: Uri) -> Response {
    let (status, content_type, body) = match files.get(uri.path()) {
        Some(file) => {
            let body = match file.request_id_at {
                Some(at) => {
                    let n = REQUESTS.fetch_add(1, Ordering::Relaxed);
                    let width = bench::site::REQUEST_ID_BYTES;
                    let mut body = Vec::with_capacity(file.body.len() + width);
                    body.extend_from_slice(&file.body[..at]);
                    body.extend_from_slice(format!("{n:0width$x}").as_bytes());
                    body.extend_from_slice(&file.body[at..]);
                    Body::from(body)
                }
                None => Body::from(file.body.clone()),
            };
            (StatusCode::OK, file.content_type, body)
        }
        None => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Body::from("not found\n"),
        ),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut files = HashMap::new();
    if let Err(e) = load(&args.root, &args.root, &mut files) {
        eprintln!("error: cannot read {}: {e}", args.root.display());
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let app = axum::Router::new()
        .fallback(serve)
        .with_state(Arc::new(files));
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        axum::serve(listener, app).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
