# How a run's resources are named and labelled; the target finds them by these (tests/terraform/yandex_standin uses
# this file as it is).
locals {
  name = "stroppy-${var.run_id}"
  labels = {
    stroppy_run_id     = var.run_id
    stroppy_expires_at = var.expires_at
    managed_by         = "stroppy-flows"
  }
  machine_names  = { for key in keys(var.machines) : key => "${local.name}-${key}" }
  machine_labels = { for key in keys(var.machines) : key => merge(local.labels, { stroppy_machine = key }) }
  # Accounts take no labels here: the target's sweep and inventory read the run and its expiry from the description.
  account_name        = "${local.name}-edge"
  account_description = "stroppy-flows run ${var.run_id}, expires ${var.expires_at}"
}
