variable "run_id" {
  type        = string
  description = "The run's id: every resource is named and labelled with it."
  validation {
    condition     = can(regex("^[a-z][-a-z0-9]{2,39}$", var.run_id))
    error_message = "run_id must be 3-40 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "expires_at" {
  type        = string
  description = "Label value after which a reaper may delete what the run left (e.g. 20261126t2300z)."
}

variable "folder_id" {
  type = string
}

variable "zone" {
  type = string
}

variable "network_id" {
  type        = string
  description = "The VPC network the run's subnet is created in."
}

variable "subnet" {
  type        = string
  description = "The run's reserved CIDR."
}

variable "control_plane_cidr" {
  type        = string
  description = "The master and the Prefect API: the only addresses besides the run's subnet allowed in."
}

variable "image_id" {
  type = string
}

variable "platform_id" {
  type = string
}

variable "public_ip" {
  type = bool
}

variable "route_table_id" {
  type        = string
  default     = null
  description = "Route table (with a NAT gateway) of the run's subnet, so machines without a public IP reach out."
}

variable "lockbox_secret_id" {
  type        = string
  description = "The Lockbox secret edge agents read their credentials from at boot."
}

variable "machines" {
  type = map(object({
    ip        = string
    cores     = number
    memory_gb = number
    disk_gb   = number
    disk_type = string
    user_data = string
  }))
  validation {
    condition     = length(var.machines) > 0
    error_message = "a run has at least one machine."
  }
}
