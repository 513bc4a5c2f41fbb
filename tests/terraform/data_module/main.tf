# A module of built-in resources only (no provider to download), shaped like the cloud module: machines in, their
# addresses out. `fail` and `hang` make an apply fail or run long after the machines exist.
terraform {
  required_version = ">= 1.4"
}

variable "machines" {
  type = map(object({ ip = string }))
}

variable "fail" {
  type    = bool
  default = false
}

variable "hang_s" {
  type    = number
  default = 0
}

resource "terraform_data" "machine" {
  for_each = var.machines
  input    = each.value.ip
}

resource "terraform_data" "after_machines" {
  count      = var.fail || var.hang_s > 0 ? 1 : 0
  depends_on = [terraform_data.machine]

  provisioner "local-exec" {
    command = "echo \"token is $YC_TOKEN, log level $TF_LOG\"; sleep ${var.hang_s}; ${var.fail ? "exit 1" : "true"}"
  }
}

output "addresses" {
  value = { for name, machine in terraform_data.machine : name => machine.output }
}
