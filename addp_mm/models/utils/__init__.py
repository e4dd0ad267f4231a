from .checkpoint import (encoder_state_dict, finetune_classifier_state_dict, load_checkpoint_file,
                         unwrap_state_dict)

__all__ = ['load_checkpoint_file', 'unwrap_state_dict', 'encoder_state_dict',
           'finetune_classifier_state_dict']
