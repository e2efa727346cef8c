"""Results records turned into knowledge: the comparison table (languages x systems over seeds), paired
statistics, the learning curve over language-SFT budgets, and what DeFT-X's denoising kept (from a
selection record). Torch-free.
"""
