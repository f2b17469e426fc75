//! Image references, as the kubelet reads them: which registry an image is pulled from.

/// The registry host of an image reference, as Docker resolves it: the first path component when it looks
/// like a host (has a dot or a port, or is `localhost`), else Docker Hub.
pub(crate) fn registry(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_registries() {
        const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        assert_eq!(registry("nginx"), "docker.io");
        assert_eq!(registry("library/nginx:1"), "docker.io");
        assert_eq!(registry("gcr.io/p/i"), "gcr.io");
        assert_eq!(registry("localhost:5000/i"), "localhost:5000");
        assert_eq!(registry(&format!("{REGISTRY}/a/b@sha256:00")), REGISTRY);
    }
}
