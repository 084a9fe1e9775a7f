//! `demo-app`: the service the README's demo puts behind `sidecar`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

use clap::Parser;
use samples::demo_app;

/// An HTTP service that echoes what it received as JSON, so the headers the proxy adds
/// (`x-request-id`, `x-forwarded-for`) can be seen in its answer.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "DEMO_APP_LISTEN", default_value = demo_app::DEFAULT_LISTEN)]
    listen: SocketAddr,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("demo-app listening on http://{}", listener.local_addr()?);
    tokio::select! {
        r = demo_app::serve(listener) => r,
        r = demo_app::shutdown_signal() => {
            eprintln!("demo-app stopping");
            r
        }
    }
}
