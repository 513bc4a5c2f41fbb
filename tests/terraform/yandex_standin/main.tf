# The Yandex Cloud module's stand-in: the real module's variables.tf and locals.tf (names, labels) are copied beside
# this file by the tests, and resources are made in the Yandex Cloud API stand-in
# (tests/standin/yandex_cloud_standin.py) through local-exec, named and labelled by those locals. The tests replace
# $STANDIN_URL with the stand-in's address.
terraform {
  required_version = ">= 1.4"
}

locals {
  machines = {
    for key, machine in var.machines : "machine-${key}" => {
      kind   = "instance"
      name   = local.machine_names[key]
      labels = local.machine_labels[key]
      extra = {
        subnetName = local.name, ip = machine.ip, cores = machine.cores, memoryGb = machine.memory_gb,
        diskGb     = machine.disk_gb, diskType = machine.disk_type, imageId = var.image_id, userData = machine.user_data
      }
    }
  }
  resources = merge(local.machines, {
    subnet = { kind = "subnet", name = local.name, labels = local.labels, extra = { cidr = var.subnet } }
    service_account = {
      kind  = "service_account", name = "${local.name}-edge", labels = {},
      extra = { description = "stroppy-flows run ${var.run_id}, expires ${var.expires_at}" }
    }
  })
}

resource "terraform_data" "resource" {
  for_each = local.resources

  input = {
    kind = each.value.kind
    name = each.value.name
    body = jsonencode({ name = each.value.name, labels = each.value.labels, extra = each.value.extra })
  }

  provisioner "local-exec" {
    command     = "curl -fsS -m 10 -X POST \"$STANDIN_URL/standin/${self.input.kind}\" -d \"$BODY\""
    environment = { BODY = self.input.body }
  }

  provisioner "local-exec" {
    when    = destroy
    command = "curl -fsS -m 10 -X DELETE \"$STANDIN_URL/standin/${self.input.kind}/${self.input.name}\""
  }
}

output "machines" {
  value = {
    for key, machine in var.machines : key => {
      internal_ip = jsondecode(terraform_data.resource["machine-${key}"].input.body).extra.ip
      nat_ip      = null
    }
  }
}
