//! `sample`: the services of the README's demo, one subcommand each. Every service listens
//! on plain HTTP on loopback (except the HTTPS stand-in for the external API) and stops on
//! SIGTERM or SIGINT.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use samples::{api_caller, external_api, legacy, order, payment, service};

#[derive(Parser)]
#[command(version, about = "Sample services for the sidecar suite's demo")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The order service: `POST /orders?item=NAME` charges the order through the payment
    /// service, called by name through the outbound sidecar.
    Order {
        #[arg(long, default_value = "127.0.0.1:18081")]
        listen: SocketAddr,
        /// The outbound sidecar listener the payment service is reached through.
        #[arg(long, default_value = "http://127.0.0.1:18101")]
        sidecar: String,
        /// The payment service's name (the Host the sidecar routes by).
        #[arg(long, default_value = "payment")]
        payment_host: String,
        /// Deadline of one call to the payment service.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// One payment replica: `POST /charge` with an `idempotency-key` header.
    Payment {
        #[arg(long, default_value = "127.0.0.1:18091")]
        listen: SocketAddr,
        /// The replica's name, returned in every answer.
        #[arg(long, default_value = "payment-a")]
        replica: String,
    },
    /// A legacy web service writing an Apache combined access log, and a Java stack trace on
    /// `GET /report`, to stdout and to `--log-file`.
    Legacy {
        #[arg(long, default_value = "127.0.0.1:18301")]
        listen: SocketAddr,
        #[arg(long, default_value = "target/demo/legacy/access.log")]
        log_file: PathBuf,
    },
    /// A service calling a third-party API through the ambassador: `GET /forecast?city=NAME`.
    ApiCaller {
        #[arg(long, default_value = "127.0.0.1:18501")]
        listen: SocketAddr,
        /// The ambassador's listener.
        #[arg(long, default_value = "http://127.0.0.1:18401")]
        ambassador: String,
        /// The ambassador route's local prefix.
        #[arg(long, default_value = "/weather")]
        prefix: String,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// An HTTPS stand-in for the third-party API: `GET /v1/forecast?city=NAME` with a bearer
    /// token issued by `--issuer`.
    ExternalApi {
        #[arg(long, default_value = "127.0.0.1:18443")]
        listen: SocketAddr,
        #[arg(long, default_value = "target/demo/api-tls/cert.pem")]
        cert: PathBuf,
        #[arg(long, default_value = "target/demo/api-tls/key.pem")]
        key: PathBuf,
        /// The token server's issuer URL (the `iss` a token must carry).
        #[arg(long, default_value = "http://localhost:18600")]
        issuer: String,
    },
    /// Write a test CA and the external API's certificate (ca.pem, cert.pem, key.pem).
    ApiCerts {
        #[arg(long, default_value = "target/demo/api-tls")]
        out: PathBuf,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse().command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sample: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))
    };
    let served = match command {
        Command::ApiCerts { out } => {
            external_api::write_certs(&out)?;
            eprintln!(
                "sample api-certs: wrote ca.pem, cert.pem, key.pem to {}",
                out.display()
            );
            return Ok(());
        }
        Command::Order {
            listen,
            sidecar,
            payment_host,
            timeout,
        } => {
            let order = order::Order::new(&sidecar, &payment_host, timeout);
            let l = bind(listen).await?;
            eprintln!(
                "order listening on http://{listen}, payment via {sidecar} as {payment_host}"
            );
            until_signal(service::serve(l, move |p, r| order.clone().handle(p, r))).await
        }
        Command::Payment { listen, replica } => {
            let payment = payment::Payment::new(&replica);
            let l = bind(listen).await?;
            eprintln!("payment replica {replica} listening on http://{listen}");
            until_signal(service::serve(l, move |p, r| payment.clone().handle(p, r))).await
        }
        Command::Legacy { listen, log_file } => {
            let legacy = legacy::Legacy::open(&log_file)
                .map_err(|e| format!("{}: cannot open: {e}", log_file.display()))?;
            let l = bind(listen).await?;
            eprintln!(
                "legacy listening on http://{listen}, logging to stdout and {}",
                log_file.display()
            );
            until_signal(service::serve(l, move |p, r| legacy.clone().handle(p, r))).await
        }
        Command::ApiCaller {
            listen,
            ambassador,
            prefix,
            timeout,
        } => {
            let caller = api_caller::ApiCaller::new(&ambassador, &prefix, timeout);
            let l = bind(listen).await?;
            eprintln!(
                "api-caller listening on http://{listen}, calling through {ambassador}{prefix}"
            );
            until_signal(service::serve(l, move |p, r| caller.clone().handle(p, r))).await
        }
        Command::ExternalApi {
            listen,
            cert,
            key,
            issuer,
        } => {
            let tls = external_api::tls_config(&cert, &key)?;
            let api = external_api::ExternalApi::new(&issuer);
            let l = bind(listen).await?;
            eprintln!("external-api listening on https://{listen}, accepting tokens from {issuer}");
            until_signal(api.serve(l, tls)).await
        }
    };
    served.map_err(|e| e.to_string())
}

/// Run the server until it fails or a stop signal arrives.
async fn until_signal(
    server: impl std::future::Future<Output = std::io::Result<()>>,
) -> std::io::Result<()> {
    tokio::select! {
        r = server => r,
        r = service::shutdown_signal() => r,
    }
}
