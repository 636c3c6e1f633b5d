//! Ward's egress proxy: the one way out of a session's network namespace, and `ward proxy`.
//!
//! Per connection or request, in this order (smokescreen's, with the gaps it leaves closed):
//! canonicalize the authority the way a client's own resolver would read it
//! ([`canon`]) -> decide on the *name* with the manifest and its Rego policies (no DNS query
//! for a refused name) -> ask the person when the answer is `ask` -> resolve once -> refuse
//! every non-public address ([`classify`]) the manifest does not name itself -> record the
//! decision durably -> dial the vetted address (never resolve again). CONNECT and SOCKS5
//! tunnels carry TLS only, and open upstream once the ClientHello's server name ([`tls`])
//! equals the name that was decided on. Every request of a kept-alive or HTTP/2 connection
//! is decided again. Request bodies are uploads: sized, limited and put to the policy.

pub mod canon;
pub mod classify;
pub mod credentials;
pub mod dlp;
pub mod dns;
pub mod intercept;
mod proxy;
pub mod socks;
pub mod tls;
pub mod ws;

pub use proxy::{Config, Dns, Forward, Intercept, Proxy, PROXY_PORT};
