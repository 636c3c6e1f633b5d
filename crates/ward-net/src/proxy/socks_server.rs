//! SOCKS5: the same admission as CONNECT, then a tunnel.

use super::*;

impl Proxy {
    pub(super) async fn socks(&self, mut s: TcpStream) {
        let r = tokio::time::timeout(Duration::from_secs(30), async {
            let mut head = [0u8; 2];
            s.read_exact(&mut head).await?;
            let mut methods = vec![0u8; head[1] as usize];
            s.read_exact(&mut methods).await?;
            if !methods.contains(&0) {
                s.write_all(&[5, 0xff]).await?;
                return Ok::<_, std::io::Error>(None);
            }
            s.write_all(&[5, 0]).await?;
            let mut buf = Vec::with_capacity(262);
            let mut chunk = [0u8; 262];
            loop {
                match socks::request(&buf) {
                    Ok(Some((req, used))) => return Ok(Some((req, buf[used..].to_vec()))),
                    Ok(None) if buf.len() < 262 => {}
                    _ => {
                        return Ok(Some((
                            socks::Request::Refused {
                                code: socks::REP_FAILURE,
                                why: "malformed SOCKS5 request".into(),
                            },
                            Vec::new(),
                        )))
                    }
                }
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await;
        let (req, early) = match r {
            Ok(Ok(Some(x))) => x,
            _ => return,
        };
        let auth = match req {
            socks::Request::Connect(a) => a,
            socks::Request::Refused { code, why } => {
                self.bad_request("socks", "socks5", &why);
                let _ = s.write_all(&socks::reply(code)).await;
                return;
            }
        };
        match self.admit("socks", "https", &auth).await {
            Ok(v) => {
                if s.write_all(&socks::reply(socks::REP_OK)).await.is_ok() {
                    self.carry(s, "https", auth, v, "socks", early).await;
                }
            }
            Err(r) => {
                let _ = s.write_all(&socks::reply(r.socks)).await;
            }
        }
    }
}
