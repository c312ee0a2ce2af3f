"""What the doctor's page says at each verification step and failure (Chinese first)."""

from __future__ import annotations

CHALLENGE_TEXT: dict[str, tuple[str, str]] = {
    "blink": ("请眨眼一次", "Please blink once"),
    "turn_left": ("请缓慢向左转头", "Please turn your head slowly to your left"),
    "turn_right": ("请缓慢向右转头", "Please turn your head slowly to your right"),
}

STEP_TEXT: dict[str, tuple[str, str]] = {
    "waiting_video": ("正在等待您的视频画面…", "Waiting for your camera picture…"),
    "looking": ("正在核验医生身份，请正对摄像头",
                "Verifying your identity: please face the camera"),
    "verified": ("身份核验通过，可以开始问诊", "Identity verified: you may start the consultation"),
    "locked": ("身份核验连续3次未通过，本次问诊已锁定，已通知运维人员",
               "Verification failed 3 times: locked for this consultation; operations notified"),
}

FAILURE_TEXT: dict[str, tuple[str, str]] = {
    "not_enrolled": ("您尚未登记人脸照片，请联系管理员",
                     "No enrolled face photo: contact the administrator"),
    "no_face": ("未检测到人脸，请正对摄像头并保持光线充足",
                "No face seen: face the camera in good light"),
    "several_faces": ("画面中有多人，请确保只有您本人在镜头前",
                      "Several people on camera: only you may be in front of the camera"),
    "not_registered": ("画面中的人与登记的医生不符",
                       "The person on camera is not the registered doctor"),
    "challenge_wrong": ("动作与要求不符（顺序不对或提前做了），本次核验未通过",
                        "The actions did not follow the requests (wrong order or too early)"),
    "no_video": ("没有收到视频画面", "No video received"),
}

# Guidance: what the doctor should fix. These never count towards the lock (verifier.py).
GUIDANCE_TEXT: dict[str, tuple[str, str]] = {
    "no_face": ("未检测到人脸：请正对摄像头，脸部完整出现在画面中",
                "No face seen: face the camera with your whole face in the picture"),
    "several_faces": ("画面中有多人：请确保镜头前只有您本人",
                      "Several people on camera: only you may be in front of the camera"),
    "too_dark": ("画面太暗：请打开灯或面向光源", "Too dark: turn on a light or face a window"),
    "face_too_small": ("脸部太小：请靠近摄像头",
                       "Your face is too small: move closer to the camera"),
    "challenge_not_done": ("未在规定时间内看到指定动作：请在提示出现后再做，稍后将给出新的动作",
                           "The action was not seen in time: do it after it is shown; "
                           "new actions follow"),
    "no_video": ("没有收到视频画面：请检查摄像头", "No video received: check your camera"),
}

PAUSED_TEXT = ("医生身份待重新确认，医生画面和声音已暂停",
               "The doctor's identity is being re-checked: their picture and sound are paused")
RESUMED_TEXT = ("已重新确认医生本人，问诊继续", "The doctor is confirmed again: the call goes on")

ASSURANCE_TEXT: dict[str, tuple[str, str]] = {
    "no_face": ("问诊中未检测到医生本人，请回到镜头前", "Doctor not seen on camera: please return"),
    "several_faces": ("问诊中画面出现多人", "Several people seen on the doctor's camera"),
    "not_registered": ("问诊中镜头前的人与登记医生不符",
                       "The person on the doctor's camera is not the registered doctor"),
    "no_video": ("没有收到医生的视频画面", "No video from the doctor"),
}
