"""The jobs a user runs: language and task SFTs trained into run directories, transfer evaluated, SFTs
composed or used to predict, and a whole experiment planned and executed step by step.
"""
