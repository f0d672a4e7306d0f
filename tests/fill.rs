//! Fill against the Misskey emulator and the real S3 server.
