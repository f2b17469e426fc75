//! The cloud providers' clients end to end against their stand-ins: Amazon ECR through moto, Google Artifact
//! Registry through the strict Google stand-in, Azure Container Registry through the Entra/ACR stand-in.

mod aws;
mod azure;
mod google;
