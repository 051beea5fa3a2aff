//! `latch token`: mint an HS256 JWT for tests and development.

pub fn run(
    secret: String,
    sub: String,
    name: Option<String>,
    roles: Vec<String>,
    ttl: &str,
    issuer: Option<String>,
    audience: Option<String>,
) -> Result<(), Vec<String>> {
    let ttl_seconds = auth::parse_ttl(ttl).map_err(|e| vec![format!("--ttl: {e}")])?;
    let request = auth::MintRequest {
        sub,
        name,
        roles: roles.into_iter().filter(|r| !r.is_empty()).collect(),
        ttl_seconds,
        issuer,
        audience,
    };
    let token = auth::mint_hs256(secret.as_bytes(), &request)
        .map_err(|e| vec![format!("--secret: {e}")])?;
    println!("{token}");
    Ok(())
}
