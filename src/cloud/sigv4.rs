//! AWS Signature Version 4. PLACEHOLDER: replaced by the signer.
