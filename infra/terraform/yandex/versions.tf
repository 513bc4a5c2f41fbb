terraform {
  required_version = ">= 1.5"
  required_providers {
    yandex = {
      source  = "yandex-cloud/yandex"
      version = "= 0.129.0"
    }
  }
}

# Credentials come from the environment the runner builds from the YandexCloud block (YC_SERVICE_ACCOUNT_KEY_FILE
# holds the key's JSON, YC_CLOUD_ID, YC_FOLDER_ID): nothing secret is written into the working directory.
provider "yandex" {
  zone = var.zone
}
