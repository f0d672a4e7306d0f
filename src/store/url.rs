//! Location URLs: `s3://bucket/prefix` or `file:///absolute/dir`.

/// Checks a location URL and removes trailing slashes: `s3://bucket/prefix`
/// or `file:///absolute/dir`.
pub fn normalize_location(url: &str) -> Result<String, String> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let rest = rest.trim_end_matches('/');
        let bucket = rest.split('/').next().unwrap_or("");
        if bucket.is_empty() {
            return Err(format!(
                "location {url:?} has no bucket (s3://bucket/prefix)"
            ));
        }
        return Ok(format!("s3://{rest}"));
    }
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!(
                "location {url:?} must be an absolute path (file:///dir)"
            ));
        }
        let trimmed = path.trim_end_matches('/');
        return Ok(format!(
            "file://{}",
            if trimmed.is_empty() { "/" } else { trimmed }
        ));
    }
    Err(format!("location {url:?} must start with s3:// or file://"))
}

/// Two locations overlap when one's keys could fall under the other's.
pub fn overlaps(a: &str, b: &str) -> bool {
    let (a, b) = (format!("{a}/"), format!("{b}/"));
    a.starts_with(&b) || b.starts_with(&a)
}
