# Terraform state stored in Terrace, workspace "networking-prod" of the org "acme".
#
# Keep the token out of this file: Terraform copies backend arguments into
# .terraform/ in plain text. Provide it through the environment instead:
#
#   export TF_HTTP_PASSWORD="<a Terrace token with the write role>"
terraform {
  backend "http" {
    address        = "https://terrace.example.com/state/acme/networking-prod"
    lock_address   = "https://terrace.example.com/state/acme/networking-prod"
    unlock_address = "https://terrace.example.com/state/acme/networking-prod"
    username       = "terraform"
  }
}

output "environment" {
  value = "networking-prod"
}
