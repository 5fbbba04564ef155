"""Federated LoRA fine-tuning over the air (docs/lora.md).

One concept per file: adapters (peft adapters, their state and flat vectors), strategy (the
interface every strategy implements), fedit / ffa_lora / pftt / sa_fedlora / full_fedavg (the
strategies), rank_schedule and factorise (SA-FedLoRA's rank budget and truncated SVD), accounting
(values and airtime sent), models (the pre-trained MLP and MiniLM classifiers), text_data
(generated label-skewed text), tasks (federated classification data), training (local training
and evaluation), trainer (the federated round). Modules that need peft or transformers import them
at the top, so import this package's modules only when the `lora` extra is installed.
"""
