output "machines" {
  description = "Machine name -> its internal address and, with public_ip, its NAT address."
  value = {
    for name, machine in yandex_compute_instance.machine : name => {
      internal_ip = machine.network_interface[0].ip_address
      nat_ip      = machine.network_interface[0].nat_ip_address
    }
  }
}
