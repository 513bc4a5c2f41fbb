resource "yandex_vpc_subnet" "run" {
  name           = local.name
  folder_id      = var.folder_id
  zone           = var.zone
  network_id     = var.network_id
  v4_cidr_blocks = [var.subnet]
  route_table_id = var.route_table_id
  labels         = local.labels
}

resource "yandex_vpc_security_group" "run" {
  name       = local.name
  folder_id  = var.folder_id
  network_id = var.network_id
  labels     = local.labels

  ingress {
    description    = "the run's own machines"
    protocol       = "ANY"
    v4_cidr_blocks = [var.subnet]
  }

  ingress {
    description    = "the master and the Prefect API (scrapes, health checks)"
    protocol       = "ANY"
    v4_cidr_blocks = [var.control_plane_cidr]
  }

  egress {
    description    = "packages, the Prefect API, Lockbox"
    protocol       = "ANY"
    v4_cidr_blocks = ["0.0.0.0/0"]
  }
}

# The machines' identity: it may read the one Lockbox secret with the edge agents' credentials, nothing else.
resource "yandex_iam_service_account" "edge" {
  name        = local.account_name
  folder_id   = var.folder_id
  description = local.account_description
}

resource "yandex_lockbox_secret_iam_member" "edge_reads_credentials" {
  secret_id = var.lockbox_secret_id
  role      = "lockbox.payloadViewer"
  member    = "serviceAccount:${yandex_iam_service_account.edge.id}"
}

resource "yandex_compute_instance" "machine" {
  for_each = var.machines

  name               = local.machine_names[each.key]
  hostname           = each.key
  folder_id          = var.folder_id
  zone               = var.zone
  platform_id        = var.platform_id
  service_account_id = yandex_iam_service_account.edge.id
  labels             = local.machine_labels[each.key]

  resources {
    cores  = each.value.cores
    memory = each.value.memory_gb
  }

  boot_disk {
    initialize_params {
      image_id = var.image_id
      size     = each.value.disk_gb
      type     = each.value.disk_type
    }
  }

  network_interface {
    subnet_id          = yandex_vpc_subnet.run.id
    ip_address         = each.value.ip
    nat                = var.public_ip
    security_group_ids = [yandex_vpc_security_group.run.id]
  }

  metadata = {
    user-data          = each.value.user_data
    serial-port-enable = "0"
  }

  depends_on = [yandex_lockbox_secret_iam_member.edge_reads_credentials]
}
